"""``DjangoStore``'s own behaviour, on SQLite and on PostgreSQL, prepared and ORM.

The store contract every store keeps is ``tests/test_store.py``'s (run with
``django-sqlite``, ``django-postgresql`` and their ``-orm`` cases); this adds
what is particular to Django: the caller's transaction, the models, the
connection left after an error, and what the database itself may refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction

from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice, RejectedRequest
from bounce_middleware.adapters.django.prepared import column_fields
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState
from tests.django_app.support import ALIASES, end_connection


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["prepared", "orm"])
def store(alias: str, request: pytest.FixtureRequest) -> DjangoStore:
    """The store on ``alias``: with the prepared hot-path statements, and with the ORM only."""
    return DjangoStore(using=alias, prepared=request.param)


def make_bounce(id: int = 1, email: str = "ann@example.com", kind: str = "hard") -> Bounce:
    body = b'{"ID": %d}' % id
    return Bounce(
        provider="postmark", id=str(id), email=email, kind=BounceKind(kind), type="X", body=body
    )


def claim(store: DjangoStore, bounce: Bounce, lease_seconds: float = 300) -> Claim:
    return store.claim(bounce, lease_seconds=lease_seconds)


def test_claim_inside_a_callers_transaction_keeps_it_usable(store: DjangoStore) -> None:
    bounce = make_bounce()
    claim(store, bounce)
    with transaction.atomic(using=store.db):
        assert claim(store, bounce).state is ClaimState.BUSY  # the duplicate INSERT failed...
        assert BounceEvent.objects.using(store.db).count() == 1  # ...the transaction works


def test_database_errors_become_store_unavailable(store: DjangoStore) -> None:
    with connections[store.db].cursor() as cursor:
        cursor.execute("ALTER TABLE bounce_middleware_bounceevent RENAME TO moved_away")
    try:
        with pytest.raises(StoreUnavailable, match=r"^bounce store \(\w+\): claim: ") as raised:
            claim(store, make_bounce(email="secret@example.com"))
        assert "secret" not in str(raised.value)
    finally:
        with connections[store.db].cursor() as cursor:
            cursor.execute("ALTER TABLE moved_away RENAME TO bounce_middleware_bounceevent")


def test_finishing_late_marks_finished_but_leaves_the_successors_lease(store: DjangoStore) -> None:
    bounce = make_bounce()
    late = claim(store, bounce, lease_seconds=-1)
    successor = claim(store, bounce)
    store.release(late, finished=True)
    event = BounceEvent.objects.using(store.db).get()
    assert event.finished
    assert event.lease_token == successor.token
    store.release(successor, finished=True)
    assert BounceEvent.objects.using(store.db).get().lease_token == ""


def test_a_late_completion_is_recorded_and_leaves_the_successors_lease(
    store: DjangoStore,
) -> None:
    bounce = make_bounce()
    late = claim(store, bounce, lease_seconds=-1)
    successor = claim(store, bounce)
    store.complete(late, "a")
    store.complete(late, "b", finished=True)
    event = BounceEvent.objects.using(store.db).get()
    assert (event.finished, event.completed_handlers) == (True, frozenset({"a", "b"}))
    assert event.lease_token == successor.token


def test_negative_limit_lists_nothing(store: DjangoStore) -> None:
    store.release(claim(store, make_bounce()), finished=True)
    assert store.records(limit=-1) == []


def test_complete_joins_the_callers_transaction(store: DjangoStore) -> None:
    first = claim(store, make_bounce())
    with pytest.raises(RuntimeError), transaction.atomic(using=store.db):
        store.complete(first, "h", finished=True)
        raise RuntimeError("the handler failed after recording")
    event = BounceEvent.objects.using(store.db).get()
    assert (event.completed, event.finished, event.lease_token) == ("", False, first.token)

    with transaction.atomic(using=store.db):
        store.complete(first, "h", finished=True)
    event.refresh_from_db()
    assert (event.completed, event.finished, event.lease_token) == ("h\n", True, "")


def test_complete_inside_a_transaction_needs_the_lease(store: DjangoStore) -> None:
    # A transactional handler whose delivery lost its lease: its writes must roll back.
    bounce = make_bounce()
    stale = claim(store, bounce, lease_seconds=-1)
    successor = claim(store, bounce)
    for finished in (False, True):
        with (
            pytest.raises(
                StoreUnavailable, match=r"^bounce store \(\w+\): complete: the lease was taken over"
            ),
            transaction.atomic(using=store.db),
        ):
            store.complete(stale, "h", finished=finished)
    event = BounceEvent.objects.using(store.db).get()
    assert (event.completed, event.finished, event.lease_token) == ("", False, successor.token)

    # The holder records inside its transaction; the lease stays its own until it finishes.
    with transaction.atomic(using=store.db):
        store.complete(successor, "h")
    event.refresh_from_db()
    assert (event.completed, event.finished, event.lease_token) == ("h\n", False, successor.token)
    with transaction.atomic(using=store.db):
        store.complete(successor, "i", finished=True)
    event.refresh_from_db()
    assert (event.completed, event.finished, event.lease_token) == ("h\ni\n", True, "")


@contextmanager
def rejections_refused(alias: str) -> Iterator[None]:
    """The database refuses every new rejected request (not as a duplicate key)."""
    table = RejectedRequest._meta.db_table
    if connections[alias].vendor == "postgresql":
        # E.g. a newer version's migration applied, then the code rolled back.
        setup = [
            f"ALTER TABLE {table} ADD COLUMN newer text NOT NULL DEFAULT 'x'",
            f"ALTER TABLE {table} ALTER COLUMN newer DROP DEFAULT",
        ]
        undo = f"ALTER TABLE {table} DROP COLUMN newer"
    else:  # SQLite cannot add a NOT NULL column without a default: a trigger instead
        setup = [
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        ]
        undo = "DROP TRIGGER refuse"
    with connections[alias].cursor() as cursor:
        for sql in setup:
            cursor.execute(sql)
    try:
        yield
    finally:
        with connections[alias].cursor() as cursor:
            cursor.execute(undo)


def test_reject_raises_when_the_database_refuses_the_row(store: DjangoStore) -> None:
    # Not kept: answering 400 would drop an authenticated request (503 makes it retry).
    body = b"not json from secret@example.com"
    with rejections_refused(store.db):
        with pytest.raises(StoreUnavailable, match=r"^bounce store \(\w+\): reject: ") as raised:
            store.reject("postmark", body, "body is not valid JSON")
        assert "secret" not in str(raised.value)
        assert not RejectedRequest.objects.using(store.db).exists()
    # A duplicate is kept already: the key, inside a caller's transaction too.
    key = store.reject("postmark", body, "body is not valid JSON")
    with transaction.atomic(using=store.db):
        assert store.reject("postmark", body, "another reason") == key
        assert RejectedRequest.objects.using(store.db).get().reason == "body is not valid JSON"


@pytest.mark.django_db(transaction=True, databases=["postgresql"])
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "orm"])
def test_after_the_server_ended_the_connection_the_next_try_reconnects(prepared: bool) -> None:
    store = DjangoStore(using="postgresql", prepared=prepared)
    held = claim(store, make_bounce(1))
    calls: list[tuple[str, Callable[[], object]]] = [
        ("claim", lambda: claim(store, make_bounce(2))),
        ("complete", lambda: store.complete(held, "h")),
        ("release", lambda: store.release(held, finished=False)),
        ("records", lambda: store.records()),
        ("reject", lambda: store.reject("postmark", b"{}", "refused")),
        ("resolve", lambda: store.resolve("postmark:rejected:sha256:00")),
    ]
    for where, call in calls:
        end_connection(store.db)
        with pytest.raises(StoreUnavailable, match=rf"^bounce store \(postgresql\): {where}: "):
            call()
        call()  # the retry (the core's, for a completion) opens a new connection
    assert claim(store, make_bounce(1)).state is ClaimState.RESUMED
    assert [r.key for r in store.records()] == ["postmark:2", "postmark:1"]


def test_prepared_inserts_write_every_column_of_each_table() -> None:
    # Read through the public get_fields(): the same fields as Django's concrete_fields.
    for model in (BounceEvent, BounceNotice, RejectedRequest, get_user_model()):
        assert column_fields(model) == tuple(model._meta.concrete_fields)
