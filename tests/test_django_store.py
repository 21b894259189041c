"""``DjangoStore`` against the store protocol, on the real test database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections, transaction

from bounce_middleware.adapters.django.models import BounceEvent
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState, Store

pytestmark = pytest.mark.django_db(transaction=True)


def make_bounce(id: int = 1, email: str = "ann@example.com", kind: str = "hard") -> Bounce:
    body = b'{"ID": %d}' % id
    return Bounce(
        provider="postmark", id=str(id), email=email, kind=BounceKind(kind), type="X", body=body
    )


def claim(store: DjangoStore, bounce: Bounce, lease_seconds: float = 300) -> Claim:
    return store.claim(bounce, lease_seconds=lease_seconds)


def test_implements_the_protocol() -> None:
    assert isinstance(DjangoStore(), Store)


def test_new_then_done() -> None:
    store = DjangoStore()
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


def test_completing_the_last_handler_can_finish_the_event() -> None:
    store = DjangoStore()
    bounce = make_bounce()
    first = claim(store, bounce)
    store.complete(first, "a")
    store.complete(first, "b", finished=True)
    again = claim(store, bounce)
    assert (again.state, again.completed) == (ClaimState.DONE, frozenset({"a", "b"}))


def test_handler_names_with_spaces_survive_a_resume() -> None:
    store = DjangoStore()
    bounce = make_bounce()
    first = claim(store, bounce)
    store.complete(first, "notify team")
    store.release(first, finished=False)
    again = claim(store, bounce)
    assert again.completed == frozenset({"notify team"})
    assert store.records()[0].completed == frozenset({"notify team"})


def test_busy_while_leased_then_resumed_after_release() -> None:
    store = DjangoStore()
    bounce = make_bounce()
    first = claim(store, bounce)
    store.complete(first, "a")
    assert claim(store, bounce).state is ClaimState.BUSY
    store.release(first, finished=False)
    resumed = claim(store, bounce)
    assert (resumed.state, resumed.completed) == (ClaimState.RESUMED, frozenset({"a"}))
    assert BounceEvent.objects.get().attempts == 2


def test_an_expired_lease_is_taken_over_and_the_old_release_leaves_it() -> None:
    store = DjangoStore()
    bounce = make_bounce()
    crashed = claim(store, bounce, lease_seconds=-1)  # a worker that died mid-delivery
    retry = claim(store, bounce)
    assert retry.state is ClaimState.RESUMED
    store.release(crashed, finished=False)  # late, and not its lease any more
    assert claim(store, bounce).state is ClaimState.BUSY


def test_records_filters_newest_first() -> None:
    store = DjangoStore()
    for id, email, kind in [(1, "a@x.org", "hard"), (2, "B@x.org", "soft"), (3, "b@x.org", "hard")]:
        c = claim(store, make_bounce(id, email, kind))
        store.release(c, finished=id != 3)
    assert [r.key for r in store.records()] == ["postmark:3", "postmark:2", "postmark:1"]
    assert [r.key for r in store.records(kind=BounceKind.HARD)] == ["postmark:3", "postmark:1"]
    assert [r.key for r in store.records(email="b@X.ORG")] == ["postmark:3", "postmark:2"]
    assert [r.key for r in store.records(unfinished=True)] == ["postmark:3"]
    assert [r.key for r in store.records(limit=1)] == ["postmark:3"]
    assert store.records(kind=BounceKind.HARD, limit=None)[0].kind is BounceKind.HARD


def test_claim_inside_a_callers_transaction_keeps_it_usable() -> None:
    store = DjangoStore()
    bounce = make_bounce()
    claim(store, bounce)
    with transaction.atomic():
        assert claim(store, bounce).state is ClaimState.BUSY  # the duplicate INSERT failed...
        assert BounceEvent.objects.count() == 1  # ...and the transaction still works


def test_concurrent_deliveries_in_threads_run_the_handlers_once() -> None:
    # Separate threads have separate connections to the test database file.
    store = DjangoStore()
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


def test_database_errors_become_store_unavailable() -> None:
    from bounce_middleware.errors import StoreUnavailable

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE bounce_middleware_bounceevent RENAME TO moved_away")
    try:
        with pytest.raises(StoreUnavailable):
            claim(DjangoStore(), make_bounce())
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE moved_away RENAME TO bounce_middleware_bounceevent")


def test_finishing_late_marks_finished_but_leaves_the_successors_lease() -> None:
    store = DjangoStore()
    bounce = make_bounce()
    late = claim(store, bounce, lease_seconds=-1)
    successor = claim(store, bounce)
    store.release(late, finished=True)
    event = BounceEvent.objects.get()
    assert event.finished
    assert event.lease_token == successor.token
    store.release(successor, finished=True)
    assert BounceEvent.objects.get().lease_token == ""


def test_negative_limit_lists_nothing() -> None:
    store = DjangoStore()
    store.release(claim(store, make_bounce()), finished=True)
    assert store.records(limit=-1) == []
