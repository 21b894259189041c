"""Exactly once for transactional handlers when a delivery's lease is taken over (Django).

Delivery A claims an event with a short lease and is held back until the lease
expired; delivery B then claims it (RESUMED). Both run the same transactional
handler, whose writes and ``DjangoStore.complete`` share one
``transaction.atomic()``. Only the delivery holding the lease may commit: the
other one's transaction rolls back (500, the provider retries). On SQLite and
on the real PostgreSQL server, with the store's prepared statements and with
the ORM only, for a handler written as the README's "Transactional handlers"
section shows and for the shipped ``notify_users``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import router, transaction
from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware, Delivery, StoreUnavailable
from bounce_middleware.adapters.django.db import connection_scope
from bounce_middleware.adapters.django.handlers import NAME as SHIPPED
from bounce_middleware.adapters.django.handlers import notify_users
from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.model import BounceKind
from bounce_middleware.testing import postmark_bounce
from tests.django_app.models import Suppression
from tests.django_app.support import PATH, on_alias
from tests.django_app.takeover import Pauses, Post, pausing_at
from tests.django_settings import WEBHOOK_PASSWORD

LEASE = 0.1  # seconds: A's lease expires within the test
PAYLOAD = postmark_bounce(email="bob@example.com", ID=4242)
OWN = "tests.suppress"
THEN = "tests.then"

#: Each database, with the prepared statements and with the ORM only.
CASES = [
    pytest.param(
        alias,
        prepared,
        marks=pytest.mark.django_db(transaction=True, databases=[alias]),
        id=f"{alias}-{'prepared' if prepared else 'orm'}",
    )
    for alias in ("default", "postgresql")
    for prepared in (True, False)
]


def own_handler(pause: Pauses) -> Callable[[Bounce, Delivery], bool]:
    """A transactional handler written as the README shows, with the test's pauses."""

    def suppress(bounce: Bounce, delivery: Delivery) -> bool:
        pause("before")
        db = router.db_for_write(Suppression)
        with transaction.atomic(using=db):
            Suppression.objects.using(db).create(email=bounce.email, event_key=bounce.key)
            store = delivery.store
            if isinstance(store, DjangoStore) and store.db == db:
                store.complete(delivery.claim, delivery.name, finished=delivery.finishes)
                pause("after")  # written and completed, not committed yet
                return True
        return False

    suppress.transactional = True  # type: ignore[attr-defined]
    return suppress


def shipped_handler(pause: Pauses) -> Callable[[Bounce, Delivery], bool]:
    """``notify_users`` itself, held before it starts and after its completion's UPDATE."""

    def held(bounce: Bounce, delivery: Delivery) -> bool:
        pause("before")
        db = router.db_for_write(BounceNotice)
        with pausing_at(db, pause, "after", "UPDATE", before=False):
            return notify_users(bounce, delivery)

    held.transactional = True  # type: ignore[attr-defined]
    return held


HANDLERS = {OWN: own_handler, SHIPPED: shipped_handler}


def applied(alias: str, name: str) -> int:
    """How many times the handler's writes were committed (bob has one notice per event)."""
    if name == OWN:
        return Suppression.objects.using(alias).count()
    return BounceNotice.objects.using(alias).count()


def make_app(alias: str, prepared: bool, handler: Any, name: str, then: Any = None) -> TestApp[Any]:
    """The middleware with the handler, and ``then`` (a plain handler) after it if given."""
    middleware = BounceMiddleware(
        lambda environ, start_response: [],
        path=PATH,
        credentials=[f"postmark:{WEBHOOK_PASSWORD}"],
        store=DjangoStore(using=alias, prepared=prepared),
        lease_seconds=LEASE,
        scope=connection_scope,
    )
    middleware.add_handler(handler, name=name)
    if then is not None:
        middleware.add_handler(then, name=THEN)
    return TestApp(middleware)


def start_a(
    alias: str, prepared: bool, name: str, pause: Pauses, then: Any = None
) -> tuple[TestApp[Any], Post]:
    """Delivery A: claims the event, then waits before its transaction until its lease
    expired."""
    get_user_model().objects.db_manager(alias).create_user("bob", contact_email="Bob@example.com")
    app = make_app(alias, prepared, HANDLERS[name](pause), name, then)
    a = Post(app, "A", PAYLOAD)
    a.start()
    pause.reached("A", "before")
    time.sleep(LEASE + 0.1)
    return app, a


def assert_finished_once(alias: str, name: str, attempts: int) -> None:
    event = BounceEvent.objects.using(alias).get()
    # The raw column: a set would hide a completion recorded twice.
    assert (event.finished, event.completed, event.attempts) == (True, f"{name}\n", attempts)
    assert applied(alias, name) == 1


@pytest.mark.parametrize(("alias", "prepared"), CASES)
@pytest.mark.parametrize("name", [OWN, SHIPPED])
def test_the_taken_over_delivery_rolls_back_after_the_successor_committed(
    alias: str, prepared: bool, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    pause = Pauses(("A", "before"))
    with on_alias(alias):
        app, a = start_a(alias, prepared, name, pause)
        b = Post(app, "B", PAYLOAD)
        b.start()
        assert b.result() == (200, "accepted\n")  # B took the event over and applied it
        pause.release("A", "before")
        with caplog.at_level(logging.ERROR):
            status, text = a.result()
        assert status == 500 and "handler failed" in text
        assert "the lease was taken over" in caplog.text
        assert_finished_once(alias, name, attempts=2)


@pytest.mark.parametrize(("alias", "prepared"), CASES)
@pytest.mark.parametrize("name", [OWN, SHIPPED])
def test_the_taken_over_delivery_rolls_back_while_the_successor_runs(
    alias: str, prepared: bool, name: str
) -> None:
    pause = Pauses(("A", "before"), ("B", "before"))
    with on_alias(alias):
        app, a = start_a(alias, prepared, name, pause)
        b = Post(app, "B", PAYLOAD)
        b.start()
        pause.reached("B", "before")  # B holds the lease, its handler not started
        pause.release("A", "before")
        status, text = a.result()
        assert status == 500 and "handler failed" in text
        assert applied(alias, name) == 0  # A's writes rolled back
        pause.release("B", "before")
        assert b.result() == (200, "accepted\n")
        assert_finished_once(alias, name, attempts=2)


@pytest.mark.parametrize(("alias", "prepared"), CASES)
@pytest.mark.parametrize("name", [OWN, SHIPPED])
def test_a_takeover_waits_for_the_holder_that_already_finished(
    alias: str, prepared: bool, name: str
) -> None:
    # A's lease expired but nobody took it over yet: A may still complete. Its completion
    # locks the event's row (PostgreSQL; the database on SQLite) until A commits, so B's
    # claim waits and then finds it finished.
    pause = Pauses(("A", "before"), ("A", "after"))
    with on_alias(alias):
        app, a = start_a(alias, prepared, name, pause)
        pause.release("A", "before")
        pause.reached("A", "after")  # written and completed in A's open transaction
        b = Post(app, "B", PAYLOAD)
        b.start()
        time.sleep(0.2)
        assert b.answer is None  # waiting for A's transaction
        pause.release("A", "after")
        assert a.result() == (200, "accepted\n")
        assert b.result() == (200, "already processed\n")
        assert_finished_once(alias, name, attempts=1)


@pytest.mark.parametrize(("alias", "prepared"), CASES)
def test_a_takeover_runs_only_what_had_not_completed_when_it_took_over(
    alias: str, prepared: bool
) -> None:
    # B reads the event (A's lease expired, nothing completed), then A completes its
    # transactional handler and commits, then B takes the event over: B must run only
    # what had not completed when it took the event, not what it had read before.
    pause = Pauses(("A", "before"), ("B", "take"), ("A", "then"))
    ran: list[str] = []

    def then(bounce: Bounce) -> None:
        ran.append(threading.current_thread().name)
        pause("then")

    with on_alias(alias):
        app, a = start_a(alias, prepared, OWN, pause, then)
        b = Post(
            app,
            "B",
            PAYLOAD,
            around=lambda: pausing_at(alias, pause, "take", "UPDATE", before=True),
        )
        b.start()
        pause.reached("B", "take")  # B read the event and is about to take it over
        pause.release("A", "before")
        pause.reached("A", "then")  # A committed its handler's writes and completion
        pause.release("B", "take")
        assert b.result() == (200, "accepted\n")  # B ran only the plain handler
        pause.release("A", "then")
        assert a.result() == (200, "accepted\n")
        assert ran == ["A", "B"]  # the plain handler: at least once
        [record] = DjangoStore(using=alias).records()
        assert (record.finished, record.attempts) == (True, 2)
        assert record.completed == {OWN, THEN}
        assert applied(alias, OWN) == 1


def bounce() -> Bounce:
    return Bounce(
        provider="postmark", id="1", email="ann@example.com", kind=BounceKind.HARD,
        type="HardBounce", description="Gone.", body=b'{"ID": 1}',
    )  # fmt: skip


@pytest.mark.parametrize(("alias", "prepared"), CASES)
def test_notify_users_of_a_delivery_that_lost_its_lease_raises_and_writes_nothing(
    alias: str, prepared: bool
) -> None:
    with on_alias(alias):
        get_user_model().objects.db_manager(alias).create_user(
            "ann", contact_email="Ann@Example.com"
        )
        store = DjangoStore(using=alias, prepared=prepared)
        event = bounce()
        stale = store.claim(event, lease_seconds=0)  # its handler is slow
        successor = store.claim(event, lease_seconds=300)
        with pytest.raises(StoreUnavailable, match="the lease was taken over"):
            notify_users(event, Delivery(stale, store, SHIPPED, True))
        row = BounceEvent.objects.using(alias).get()
        assert (row.completed, row.finished, row.lease_token) == ("", False, successor.token)
        assert not BounceNotice.objects.using(alias).exists()  # rolled back
        assert notify_users(event, Delivery(successor, store, SHIPPED, True)) is True
        row.refresh_from_db()
        assert (row.completed, row.finished, row.lease_token) == (f"{SHIPPED}\n", True, "")
        assert BounceNotice.objects.using(alias).count() == 1
