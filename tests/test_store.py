"""The store contract suite: the Store protocol, run against every shipped store.

Each test runs once per store and database (``store_case`` in ``tests/conftest.py``,
built by ``tests/store_cases.py``): MemoryStore, SQLiteStore, SQLAlchemyStore on
SQLite and on a real PostgreSQL server, DjangoStore on SQLite and on PostgreSQL.
This file covers the protocol's claims, leases, completions, listing and
failures; ``tests/test_store_values.py`` covers rejected records and the values
any parser may hand a store.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bounce_middleware import BounceKind, ClaimState, Store, StoreUnavailable
from tests.store_apps import LEASE, make_bounce
from tests.store_cases import DATABASE_NAMES, StoreCase, params


def run_threads(case: StoreCase, count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(0..count-1)`` in ``count`` threads started together; their results, in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = work(n)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            case.end_thread()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


# -- claims and leases -------------------------------------------------------


def test_the_store_implements_the_protocol(store_case: StoreCase) -> None:
    assert isinstance(store_case.store, Store)


def test_first_claim_records_the_event_and_takes_a_lease(store_case: StoreCase) -> None:
    store = store_case.store
    body = b'{"ID": 1, "bytes": "\xff\x00 kept as they came"}'
    claim = store.claim(make_bounce(1, email="Ann@Example.com", body=body), lease_seconds=LEASE)
    assert claim.state is ClaimState.NEW
    assert claim.runs_handlers
    assert claim.token
    assert claim.completed == frozenset()
    [record] = store.records()
    assert record.key == "postmark:1"
    assert (record.provider, record.email, record.kind, record.type) == (
        "postmark",
        "Ann@Example.com",
        BounceKind.HARD,
        "HardBounce",
    )
    assert record.body == body
    assert record.attempts == 1
    assert not record.finished
    assert not record.rejected
    assert record.completed == frozenset()
    assert record.received_at.tzinfo is not None
    assert abs((datetime.now(UTC) - record.received_at).total_seconds()) < 60


def test_a_second_claim_during_the_lease_is_busy(store_case: StoreCase) -> None:
    store = store_case.store
    first = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(first, "a")
    second = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert second.state is ClaimState.BUSY
    assert not second.runs_handlers
    assert second.token == ""
    assert second.completed == {"a"}


def test_a_finished_event_is_done(store_case: StoreCase) -> None:
    store = store_case.store
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.complete(claim, "b")
    store.release(claim, finished=True)
    again = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert again.state is ClaimState.DONE
    assert again.completed == {"a", "b"}
    assert not again.runs_handlers
    assert again.token == ""
    [record] = store.records()
    assert record.finished
    assert record.attempts == 1


def test_a_released_unfinished_event_resumes_with_its_completed_handlers(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.release(claim, finished=False)
    resumed = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert resumed.state is ClaimState.RESUMED
    assert resumed.runs_handlers
    assert resumed.completed == {"a"}
    assert resumed.token and resumed.token != claim.token
    [record] = store.records()
    assert record.attempts == 2
    assert not record.finished
    # The resumed claim holds a new lease: another delivery now waits.
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY


def test_an_expired_lease_is_taken_over(store_case: StoreCase) -> None:
    store = store_case.store
    # A worker that died while running handlers never releases; its lease runs out.
    crashed = store.claim(make_bounce(1), lease_seconds=0)
    store.complete(crashed, "a")
    taken = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert taken.state is ClaimState.RESUMED
    assert taken.completed == {"a"}
    assert taken.token and taken.token != crashed.token
    assert store.records()[0].attempts == 2


def test_a_stale_claim_does_not_release_the_lease_of_its_successor(store_case: StoreCase) -> None:
    store = store_case.store
    slow = store.claim(make_bounce(1), lease_seconds=0)
    successor = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert successor.state is ClaimState.RESUMED
    store.release(slow, finished=False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY
    store.release(successor, finished=False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.RESUMED


def test_completing_twice_is_harmless(store_case: StoreCase) -> None:
    store = store_case.store
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.complete(claim, "a")
    assert store.records()[0].completed == {"a"}
    store.release(claim, finished=False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).completed == {"a"}


def test_a_completion_is_recorded_at_once_not_at_release(store_case: StoreCase) -> None:
    store = store_case.store
    claim = store.claim(make_bounce(1), lease_seconds=0)
    store.complete(claim, "a")
    # The worker crashes here: no release. What completed is known all the same.
    assert store.records()[0].completed == {"a"}
    assert store.claim(make_bounce(1), lease_seconds=LEASE).completed == {"a"}


def test_completing_the_last_handler_can_finish_the_event(store_case: StoreCase) -> None:
    store = store_case.store
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.complete(claim, "b", finished=True)
    done = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a", "b"}))
    [record] = store.records()
    assert record.finished
    assert record.completed == {"a", "b"}


def test_a_stale_claim_finishing_leaves_the_successors_lease(store_case: StoreCase) -> None:
    store = store_case.store
    slow = store.claim(make_bounce(1), lease_seconds=0)
    successor = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(slow, "a", finished=True)
    # The event is finished (its last handler completed), and nobody else's lease was touched.
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE
    store.release(successor, finished=False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE


def test_handler_names_are_kept_as_given(store_case: StoreCase) -> None:
    store = store_case.store
    names = {"tests.handlers.notify", "notify team", "audit-log", "café ✉", "x" * 300}
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    for name in names:
        store.complete(claim, name)
    store.release(claim, finished=False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).completed == names
    assert store.records()[0].completed == names


# -- records -----------------------------------------------------------------


def test_records_newest_first_and_filtered(store_case: StoreCase) -> None:
    store = store_case.store
    bounces = [
        make_bounce(1, "ann@example.com", BounceKind.HARD),
        make_bounce(2, "bob@example.com", BounceKind.SOFT),
        make_bounce(3, "ANN@example.com", BounceKind.SOFT),
        make_bounce(4, "cy@example.com", BounceKind.HARD),
    ]
    for bounce in bounces:
        claim = store.claim(bounce, lease_seconds=LEASE)
        store.release(claim, finished=bounce.id != "3")
    # Seeing an event again does not make it newer.
    store.claim(bounces[0], lease_seconds=LEASE)

    def keys(**filters: Any) -> list[str]:
        return [r.key.removeprefix("postmark:") for r in store.records(**filters)]

    assert keys() == ["4", "3", "2", "1"]
    assert keys(kind=BounceKind.SOFT) == ["3", "2"]
    assert keys(email="Ann@Example.COM") == ["3", "1"]
    assert keys(unfinished=True) == ["3"]
    assert keys(kind=BounceKind.HARD, email="cy@example.com") == ["4"]
    assert keys(kind=BounceKind.SOFT, unfinished=True) == ["3"]
    assert keys(limit=2) == ["4", "3"]
    assert keys(limit=None) == ["4", "3", "2", "1"]
    assert keys(limit=0) == []
    assert keys(email="nobody@example.com") == []
    assert keys(kind=BounceKind.COMPLAINT) == []


def test_records_are_listed_newest_first_beyond_the_default_limit(store_case: StoreCase) -> None:
    store = store_case.store
    for n in range(103):
        store.release(store.claim(make_bounce(n), lease_seconds=LEASE), finished=True)
    listed = store.records()
    assert [r.key for r in listed] == [f"postmark:{n}" for n in range(102, 2, -1)]
    assert len(store.records(limit=None)) == 103


def test_records_show_each_events_attempts_and_completions(store_case: StoreCase) -> None:
    store = store_case.store
    first = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(first, "a")
    store.release(first, finished=False)
    store.claim(make_bounce(2), lease_seconds=LEASE)
    again = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(again, "b", finished=True)
    by_key = {r.key: r for r in store.records()}
    assert (by_key["postmark:1"].attempts, by_key["postmark:1"].completed) == (
        2,
        frozenset({"a", "b"}),
    )
    assert by_key["postmark:1"].finished
    assert (by_key["postmark:2"].attempts, by_key["postmark:2"].completed) == (1, frozenset())
    assert not by_key["postmark:2"].finished


@pytest.mark.parametrize("store_case", params(DATABASE_NAMES), indirect=True)
def test_a_kind_only_a_newer_version_knows_is_listed_as_unknown(store_case: StoreCase) -> None:
    store = store_case.store
    store.claim(make_bounce(1), lease_seconds=LEASE)
    assert store_case.set_kind is not None
    store_case.set_kind("postmark:1", "forwarded")
    [record] = store.records()
    assert record.kind is BounceKind.UNKNOWN
    assert [r.key for r in store.records(kind=BounceKind.HARD)] == []


# -- concurrency -------------------------------------------------------------


def test_concurrent_claims_let_exactly_one_delivery_run(store_case: StoreCase) -> None:
    store = store_case.store
    threads = 16
    states = run_threads(
        store_case, threads, lambda _: store.claim(make_bounce(1), lease_seconds=LEASE).state
    )
    assert Counter(states) == {ClaimState.NEW: 1, ClaimState.BUSY: threads - 1}
    [record] = store.records()
    assert record.attempts == 1


def test_concurrent_takeovers_of_an_expired_lease_let_exactly_one_run(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    crashed = store.claim(make_bounce(1), lease_seconds=0)
    store.complete(crashed, "a")
    threads = 12
    claims = run_threads(
        store_case, threads, lambda _: store.claim(make_bounce(1), lease_seconds=LEASE)
    )
    assert Counter(c.state for c in claims) == {ClaimState.RESUMED: 1, ClaimState.BUSY: 11}
    assert all(c.completed == {"a"} for c in claims)


def test_concurrent_deliveries_of_distinct_events_are_all_recorded(store_case: StoreCase) -> None:
    store = store_case.store

    def deliver(n: int) -> ClaimState:
        claim = store.claim(make_bounce(n, email=f"user{n}@example.com"), lease_seconds=LEASE)
        store.complete(claim, "a")
        store.complete(claim, "b", finished=True)
        return claim.state

    states = run_threads(store_case, 12, deliver)
    assert states == [ClaimState.NEW] * 12
    records = store.records(limit=None)
    assert sorted(r.key for r in records) == sorted(f"postmark:{n}" for n in range(12))
    assert all(r.finished and r.completed == {"a", "b"} for r in records)


# -- failures ----------------------------------------------------------------


@pytest.mark.parametrize("store_case", params(DATABASE_NAMES), indirect=True)
def test_a_broken_database_raises_store_unavailable_and_nothing_else(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    address = "secret.person@example.com"
    claim = store.claim(make_bounce(1, email=address), lease_seconds=LEASE)
    calls: list[Callable[[], object]] = [
        lambda: store.claim(make_bounce(2, email=address), lease_seconds=LEASE),
        lambda: store.complete(claim, "a"),
        lambda: store.complete(claim, "b", finished=True),
        lambda: store.release(claim, finished=True),
        lambda: store.records(email=address),
        lambda: store.records(rejected=True),
        lambda: store.reject("postmark", address.encode(), "field ID is missing"),
        lambda: store.resolve("postmark:rejected:sha256:00"),
    ]
    with store_case.tables_renamed():
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                call()
            # Safe to log: never a value the statement carried.
            assert address not in str(raised.value)
            assert "secret" not in str(raised.value)
    # Repaired: the same store object works again.
    store.complete(claim, "a", finished=True)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE
