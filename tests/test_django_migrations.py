"""The adapter's migrations: up to date, and upgrading a version-1 database in place.

The upgrade runs Django's migration executor from ``0001_initial`` to the
latest migration on real databases (SQLite and PostgreSQL), with rows written
by version 1's schema in between; going back is refused while it would lose
rows or values.
"""

from __future__ import annotations

from importlib import import_module
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice, RejectedRequest
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import ClaimState
from tests.django_app.support import ALIASES

VersionOneCannotHold = import_module(
    "bounce_middleware.adapters.django.migrations.0002_unbounded_text"
).VersionOneCannotHold

APP = "bounce_middleware"
VERSION_1 = [(APP, "0001_initial")]


@pytest.mark.django_db
def test_migrations_are_up_to_date() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.parametrize("alias", ALIASES)
def test_upgrade_from_version_1_keeps_the_rows_and_folds_their_addresses(alias: str) -> None:
    connection = connections[alias]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes(APP)
    executor = MigrationExecutor(connection)
    executor.migrate(VERSION_1)
    try:
        old = MigrationExecutor(connection).loader.project_state(VERSION_1).apps
        event_v1 = old.get_model(APP, "BounceEvent")
        notice_v1 = old.get_model(APP, "BounceNotice")
        user = (
            get_user_model()
            .objects.db_manager(alias)
            .create_user(username="emile", contact_email="Émile@Example.com")
        )
        now = timezone.now()
        for number in range(3):
            event_v1.objects.using(alias).create(
                key=f"postmark:{number}", provider="postmark", email=f"Émile{number}@Example.COM",
                kind="hard", type="HardBounce", description="Gone.", body=b'{"ID": 1}',
                received_at=now, completed="h\n", finished=True,
            )  # fmt: skip
        notice_v1.objects.using(alias).create(
            user_id=user.pk, email="Émile@Example.com", event_key="postmark:0", kind="hard",
            description="Gone.", created_at=now,
        )  # fmt: skip

        MigrationExecutor(connection).migrate(latest)

        events = BounceEvent.objects.using(alias).order_by("key")
        assert [(e.key, e.email, e.email_key, e.finished, e.completed) for e in events] == [
            (f"postmark:{n}", f"Émile{n}@Example.COM", f"émile{n}@example.com", True, "h\n")
            for n in range(3)
        ]
        notice = BounceNotice.objects.using(alias).get()
        assert (notice.user_id, notice.email_key) == (user.pk, "émile@example.com")
        # The upgraded schema takes what version 1's refused (on PostgreSQL).
        store = DjangoStore(using=alias)
        bounce = Bounce(
            provider="postmark", id="9" * 300, email="x" * 400 + "@example.com",
            kind=BounceKind.HARD, type="T" * 100, description="NUL \x00", body=b"{}",
        )  # fmt: skip
        assert store.claim(bounce, lease_seconds=60).state is ClaimState.NEW
        assert [r.key for r in store.records(email="Émile1@example.com")] == ["postmark:1"]
    finally:
        MigrationExecutor(connection).migrate(latest)


@pytest.mark.parametrize("alias", ALIASES)
def test_going_back_to_version_1_is_refused_while_it_would_lose_data(alias: str) -> None:
    connection = connections[alias]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes(APP)
    store = DjangoStore(using=alias)
    store.reject("postmark", b"not json", "body is not valid JSON")
    long_type = Bounce(
        provider="postmark", id="1", email="ann@example.com", kind=BounceKind.HARD,
        type="T" * 100, body=b"{}",
    )  # fmt: skip
    store.claim(long_type, lease_seconds=60)
    try:
        refused = (
            r"^bounce_middleware 0002_unbounded_text cannot be reversed without losing data: "
            r"1 rejected request\(s\), whose table version 1 does not have; "
            r"1 BounceEvent\.type value\(s\) over version 1's 64 characters\. "
        )
        with pytest.raises(VersionOneCannotHold, match=refused):
            MigrationExecutor(connection).migrate(VERSION_1)
        # Nothing was dropped or cut.
        assert RejectedRequest.objects.using(alias).get().reason == "body is not valid JSON"
        assert BounceEvent.objects.using(alias).get().type == "T" * 100

        # Once they are gone (replayed, or deleted on purpose), it goes back.
        RejectedRequest.objects.using(alias).all().delete()
        BounceEvent.objects.using(alias).update(type="HardBounce")
        MigrationExecutor(connection).migrate(VERSION_1)
        assert RejectedRequest._meta.db_table not in connection.introspection.table_names()
        assert BounceEvent.objects.using(alias).values_list("key", flat=True).get() == "postmark:1"
    finally:
        MigrationExecutor(connection).migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_upgrade_keys_a_nul_in_an_address_as_the_store_does() -> None:
    # Version 1 kept a NUL as it came on SQLite; the store now keys it as U+FFFD.
    connection = connections["default"]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes(APP)
    MigrationExecutor(connection).migrate(VERSION_1)
    try:
        old = MigrationExecutor(connection).loader.project_state(VERSION_1).apps
        old.get_model(APP, "BounceEvent").objects.create(
            key="postmark:1", provider="postmark", email="Ann\x00@Example.com", kind="hard",
            type="HardBounce", body=b"{}", received_at=timezone.now(),
        )  # fmt: skip
        MigrationExecutor(connection).migrate(latest)
        assert BounceEvent.objects.get().email_key == "ann\ufffd@example.com"
        [record] = DjangoStore().records(email="ANN\x00@example.com")
        assert record.email == "Ann\x00@Example.com"
    finally:
        MigrationExecutor(connection).migrate(latest)
