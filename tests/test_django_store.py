"""``DjangoStore``'s own behaviour, on SQLite and on PostgreSQL.

The store contract every store keeps is ``tests/test_store.py``'s; this adds
what is particular to Django: the caller's transaction, the models, the
folded-address column, values read back from older or newer versions.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections, transaction

from bounce_middleware.adapters.django.models import BounceEvent, RejectedRequest
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState, Store, rejection_key
from tests.django_app.support import ALIASES


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


def test_implements_the_protocol(store: DjangoStore) -> None:
    assert isinstance(store, Store)


def test_new_then_done(store: DjangoStore) -> None:
    bounce = make_bounce()
    first = claim(store, bounce)
    assert (first.state, first.completed) == (ClaimState.NEW, frozenset())
    store.complete(first, "a")
    store.complete(first, "b")
    store.release(first, finished=True)
    again = claim(store, bounce)
    assert (again.state, again.completed) == (ClaimState.DONE, frozenset({"a", "b"}))
    [record] = store.records()
    assert (record.key, record.finished, record.completed) == (
        "postmark:1",
        True,
        frozenset({"a", "b"}),
    )
    assert record.body == b'{"ID": 1}'


def test_completing_the_last_handler_can_finish_the_event(store: DjangoStore) -> None:
    bounce = make_bounce()
    first = claim(store, bounce)
    store.complete(first, "a")
    store.complete(first, "b", finished=True)
    again = claim(store, bounce)
    assert (again.state, again.completed) == (ClaimState.DONE, frozenset({"a", "b"}))


def test_handler_names_with_spaces_survive_a_resume(store: DjangoStore) -> None:
    bounce = make_bounce()
    first = claim(store, bounce)
    store.complete(first, "notify team")
    store.release(first, finished=False)
    again = claim(store, bounce)
    assert again.completed == frozenset({"notify team"})
    assert store.records()[0].completed == frozenset({"notify team"})


def test_busy_while_leased_then_resumed_after_release(store: DjangoStore) -> None:
    bounce = make_bounce()
    first = claim(store, bounce)
    store.complete(first, "a")
    assert claim(store, bounce).state is ClaimState.BUSY
    store.release(first, finished=False)
    resumed = claim(store, bounce)
    assert (resumed.state, resumed.completed) == (ClaimState.RESUMED, frozenset({"a"}))
    assert BounceEvent.objects.using(store.db).get().attempts == 2


def test_an_expired_lease_is_taken_over_and_the_old_release_leaves_it(store: DjangoStore) -> None:
    bounce = make_bounce()
    crashed = claim(store, bounce, lease_seconds=-1)  # a worker that died mid-delivery
    retry = claim(store, bounce)
    assert retry.state is ClaimState.RESUMED
    store.release(crashed, finished=False)  # late, and not its lease any more
    assert claim(store, bounce).state is ClaimState.BUSY


def test_records_filters_newest_first(store: DjangoStore) -> None:
    for id, email, kind in [(1, "a@x.org", "hard"), (2, "B@x.org", "soft"), (3, "b@x.org", "hard")]:
        c = claim(store, make_bounce(id, email, kind))
        store.release(c, finished=id != 3)
    assert [r.key for r in store.records()] == ["postmark:3", "postmark:2", "postmark:1"]
    assert [r.key for r in store.records(kind=BounceKind.HARD)] == ["postmark:3", "postmark:1"]
    assert [r.key for r in store.records(email="b@X.ORG")] == ["postmark:3", "postmark:2"]
    assert [r.key for r in store.records(unfinished=True)] == ["postmark:3"]
    assert [r.key for r in store.records(limit=1)] == ["postmark:3"]
    assert store.records(kind=BounceKind.HARD, limit=None)[0].kind is BounceKind.HARD


def test_claim_inside_a_callers_transaction_keeps_it_usable(store: DjangoStore) -> None:
    bounce = make_bounce()
    claim(store, bounce)
    with transaction.atomic(using=store.db):
        assert claim(store, bounce).state is ClaimState.BUSY  # the duplicate INSERT failed...
        assert BounceEvent.objects.using(store.db).count() == 1  # ...the transaction works


def test_concurrent_deliveries_in_threads_run_the_handlers_once(store: DjangoStore) -> None:
    # Separate threads have separate connections to the test database.
    bounce = make_bounce()
    start = threading.Barrier(4)

    def deliver() -> ClaimState:
        try:
            start.wait()
            return claim(store, bounce).state
        finally:
            connections.close_all()

    with ThreadPoolExecutor(4) as pool:
        states = list(pool.map(lambda _: deliver(), range(4)))
    assert sorted(s.value for s in states) == ["busy", "busy", "busy", "new"]


def test_database_errors_become_store_unavailable(store: DjangoStore) -> None:
    with connections[store.db].cursor() as cursor:
        cursor.execute("ALTER TABLE bounce_middleware_bounceevent RENAME TO moved_away")
    try:
        with pytest.raises(StoreUnavailable, match=r"^bounce store \(\w+\): claim: "):
            claim(store, make_bounce(email="secret@example.com"))
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


def test_records_match_addresses_folded(store: DjangoStore) -> None:
    for id, email in [(1, "Émile@example.com"), (2, "ÉMILE@EXAMPLE.COM"), (3, "emile@example.com")]:
        store.release(claim(store, make_bounce(id, email)), finished=True)
    assert [r.key for r in store.records(email="émile@Example.com")] == [
        "postmark:2",
        "postmark:1",
    ]
    assert store.records(email="émile@example.com")[0].email == "ÉMILE@EXAMPLE.COM"


def test_a_kind_only_a_newer_version_knows_reads_as_unknown(store: DjangoStore) -> None:
    store.release(claim(store, make_bounce()), finished=True)
    BounceEvent.objects.using(store.db).update(kind="from_the_future")
    assert store.records()[0].kind is BounceKind.UNKNOWN


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


def test_rejected_requests_are_kept_once_listed_apart_and_resolved(store: DjangoStore) -> None:
    store.release(claim(store, make_bounce()), finished=True)
    body = b'{"Type": "HardBounce", "Email": "\x00"}'
    key = store.reject("postmark", body, "ID is missing")
    assert key == rejection_key("postmark", body)
    assert store.reject("postmark", body, "another reason") == key  # kept once
    assert RejectedRequest.objects.using(store.db).count() == 1

    [record] = store.records(rejected=True)
    assert (record.key, record.provider, record.reason, record.body) == (
        key,
        "postmark",
        "ID is missing",
        body,
    )
    assert (record.rejected, record.finished, record.kind, record.email) == (
        True,
        False,
        BounceKind.UNKNOWN,
        "",
    )
    assert [r.key for r in store.records()] == ["postmark:1"]  # accepted events only
    assert store.records(rejected=True, kind=BounceKind.HARD) == []
    assert store.records(rejected=True, email="a@example.com") == []
    assert store.records(rejected=True, unfinished=True)[0].key == key
    store.resolve(key)
    assert store.records(rejected=True, unfinished=True) == []
    assert store.records(rejected=True)[0].finished
