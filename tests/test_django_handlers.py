"""The user-store handler on its own: lookup, notices, names, kinds, other stores."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from webtest import TestApp

from bounce_middleware.adapters.django.handlers import NAME as NOTIFY
from bounce_middleware.adapters.django.handlers import (
    UserBounceHandler,
    add_notices,
    notify_users,
    user_ids,
)
from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import make_handler
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import MemoryStore
from bounce_middleware.testing import postmark_bounce
from tests.django_app.support import PATH, post_bounce
from tests.django_settings import WEBHOOK_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann() -> Any:
    """A user whose address (``contact_email``) is Ann@Example.com."""
    return get_user_model().objects.create_user(
        username="ann", password="ann-pw", contact_email="Ann@Example.com"
    )


def test_notify_users_works_with_the_plain_middleware_and_another_store(ann: Any) -> None:
    # Without wrap()'s connection scope the handler does the connection housekeeping itself.
    app = BounceMiddleware(
        get_wsgi_application(),
        path=PATH,
        credentials=[f"postmark:{WEBHOOK_PASSWORD}"],
        handlers=[notify_users],
        store=MemoryStore(),
    )
    post_bounce(TestApp(app), postmark_bounce(email="ann@example.com"))
    assert connection.connection is None
    assert BounceNotice.objects.get().user_id == ann.pk
    assert not BounceEvent.objects.exists()


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared-sql", "orm"])
def test_user_lookup_and_notice_insert(prepared: bool) -> None:
    # Both paths: the statements prepared once, and the ORM of other databases.
    make = get_user_model().objects.create_user
    wanted = [make(username="a", contact_email="Ann_B@example.com").pk]
    wanted.append(make(username="b", contact_email="ann_b@EXAMPLE.com").pk)
    make(username="c", contact_email="annxb@example.com")  # "_" is no wildcard
    make(username="d", contact_email="ann%b@example.com", email="ann_b@example.com")
    found = user_ids("default", "ANN_B@example.com", prepared=prepared)
    assert sorted(found) == sorted(wanted)

    bounce = Bounce(
        provider="postmark", id="7", email="ann_b@example.com", kind=BounceKind.HARD,
        type="HardBounce", description="Gone.",
    )  # fmt: skip
    add_notices("default", bounce, found, prepared=prepared)
    add_notices("default", bounce, found, prepared=prepared)  # a redelivery adds nothing
    notices = BounceNotice.objects.order_by("user_id")
    assert [(n.user_id, n.event_key, n.kind, n.description, n.email_key) for n in notices] == [
        (pk, "postmark:7", "hard", "Gone.", "ann_b@example.com") for pk in sorted(wanted)
    ]
    assert all(n.created_at is not None and n.shown_at is None for n in notices)


def test_user_bounce_handler_instances_are_named_and_choose_their_kinds(ann: Any) -> None:
    soft_notices = UserBounceHandler(kinds=["soft"], name="project.handlers.soft_notices")
    assert make_handler(soft_notices).name == "project.handlers.soft_notices"
    assert make_handler(notify_users).name == NOTIFY
    unnamed = make_handler(UserBounceHandler())
    assert unnamed.name == "bounce_middleware.adapters.django.handlers.UserBounceHandler"
    assert unnamed.transactional

    soft = Bounce(
        provider="postmark", id="8", email="ann@example.com", kind=BounceKind.SOFT,
        type="SoftBounce",
    )  # fmt: skip
    assert notify_users(soft) is False  # not in NOTIFY_KINDS
    assert not BounceNotice.objects.exists()
    assert soft_notices(soft) is False  # called without a delivery: nothing recorded
    assert BounceNotice.objects.get().kind == "soft"
    with pytest.raises(ConfigurationError, match="kinds"):
        UserBounceHandler(kinds=["fatal"])
