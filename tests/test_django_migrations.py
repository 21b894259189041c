"""The adapter's migrations: up to date, and upgrading a version-1 database in place.

The upgrade runs Django's migration executor from ``0001_initial`` to the
latest migration on real databases (SQLite and PostgreSQL), with rows written
by version 1's schema in between.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import ClaimState
from tests.django_app.support import ALIASES

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
