"""The store contract for retention: ``prune`` and ``counts``, on every shipped store.

Each test runs once per store and database (``store_case``), and again on
PostgresStore (``tests/test_postgres_store_contract.py``). A store sets
``received_at`` itself, so the cut-offs here are instants taken between claims.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.test import override_settings

from bounce_middleware import ClaimState, Store, StoreUnavailable
from bounce_middleware.retention import (
    CountingStore,
    PrunableStore,
    StoreCounts,
    counts_of,
    prune,
    prune_before,
)
from tests.store_apps import LEASE, make_bounce
from tests.store_cases import DATABASE_NAMES, StoreCase, params
from tests.test_store import run_threads


def instant() -> datetime:
    """Now, with a moment on either side, so events claimed before and after differ from it."""
    time.sleep(0.02)
    now = datetime.now(UTC)
    time.sleep(0.02)
    return now


def finish(store: Store, event_id: int, *handlers: str) -> None:
    """Claim event ``event_id`` and complete it with ``handlers`` (``"a"`` by default)."""
    claim = store.claim(make_bounce(event_id), lease_seconds=LEASE)
    names = handlers or ("a",)
    for name in names[:-1]:
        store.complete(claim, name)
    store.complete(claim, names[-1], finished=True)


def keys(store: Store) -> list[str]:
    return sorted(record.key for record in store.records(limit=None))


def prunable(store: Store) -> PrunableStore:
    assert isinstance(store, PrunableStore)
    return store


def counted(store: Store, before: datetime | None = None) -> StoreCounts:
    assert isinstance(store, CountingStore)
    return store.counts(before=before)


def test_every_shipped_store_prunes_and_counts(store_case: StoreCase) -> None:
    assert isinstance(store_case.store, PrunableStore)
    assert isinstance(store_case.store, CountingStore)


def test_prune_deletes_only_finished_events_received_before_the_cut_off(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    finish(store, 1, "a", "b")
    running = store.claim(make_bounce(2), lease_seconds=LEASE)  # a delivery in flight
    failed = store.claim(make_bounce(3), lease_seconds=LEASE)  # one handler failed
    store.complete(failed, "a")
    store.release(failed, finished=False)
    crashed = store.claim(make_bounce(4), lease_seconds=0)  # its worker died: lease expired
    store.complete(crashed, "a")
    unresolved = store.reject("postmark", b"refused, waiting for a replay", "field ID is missing")
    resolved = store.reject("postmark", b"refused, replayed since", "field ID is missing")
    store.resolve(resolved)
    cut = instant()
    finish(store, 5)

    assert prunable(store).prune(cut, limit=100) == 1

    assert keys(store) == ["postmark:2", "postmark:3", "postmark:4", "postmark:5"]
    waiting = {r.key: r for r in store.records(unfinished=True, limit=None)}
    assert set(waiting) == {"postmark:2", "postmark:3", "postmark:4"}
    assert waiting["postmark:3"].completed == {"a"}
    assert waiting["postmark:4"].completed == {"a"}
    assert {r.key for r in store.records(rejected=True, limit=None)} == {unresolved, resolved}
    # The unfinished events keep their state: the lease held, the handlers completed.
    assert store.claim(make_bounce(2), lease_seconds=LEASE).state is ClaimState.BUSY
    store.release(running, finished=False)
    assert store.claim(make_bounce(3), lease_seconds=LEASE).completed == {"a"}
    # Pruned with its completions: a delivery of it now is a new event with none done.
    again = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert (again.state, again.completed) == (ClaimState.NEW, frozenset())
    [record] = [r for r in store.records(limit=None) if r.key == "postmark:1"]
    assert record.completed == frozenset()
    # Nothing else is old enough; the rest stays, however often it runs.
    assert prunable(store).prune(cut, limit=100) == 0
    assert len(keys(store)) == 5


def test_prune_deletes_at_most_limit_events_oldest_first(store_case: StoreCase) -> None:
    store = store_case.store
    for event_id in range(1, 6):
        finish(store, event_id)
    store.claim(make_bounce(6), lease_seconds=LEASE)
    cut = instant()

    assert prunable(store).prune(cut, limit=2) == 2
    assert keys(store) == ["postmark:3", "postmark:4", "postmark:5", "postmark:6"]
    assert prunable(store).prune(cut, limit=2) == 2
    assert prunable(store).prune(cut, limit=2) == 1
    assert prunable(store).prune(cut, limit=2) == 0
    assert keys(store) == ["postmark:6"]
    assert prunable(store).prune(cut, limit=0) == 0


def test_a_cut_off_before_every_event_deletes_nothing(store_case: StoreCase) -> None:
    store = store_case.store
    cut = instant()
    finish(store, 1)
    assert prunable(store).prune(cut, limit=100) == 0
    assert prunable(store).prune(cut - timedelta(days=365), limit=100) == 0
    # A cut-off given in another time zone is the same instant.
    eastern = timezone(timedelta(hours=-5))
    assert prunable(store).prune(cut.astimezone(eastern), limit=100) == 0
    assert prunable(store).prune(instant().astimezone(eastern), limit=100) == 1
    assert keys(store) == []


@pytest.mark.parametrize("store_case", params(), indirect=True)
def test_a_naive_cut_off_is_taken_as_utc(store_case: StoreCase) -> None:
    store = store_case.store
    finish(store, 1)
    cut = instant()
    finish(store, 2)
    naive = cut.astimezone(UTC).replace(tzinfo=None)
    # Far from UTC, both for the process (a naive time read as local would move by
    # hours) and for Django (which reads a naive value in TIME_ZONE).
    with override_settings(TIME_ZONE="Asia/Kathmandu"):
        assert time.localtime().tm_gmtoff == 5 * 3600 + 45 * 60
        assert counted(store, naive).prunable == 1
        assert prunable(store).prune(naive, limit=10) == 1
    assert keys(store) == ["postmark:2"]


def test_retention_prune_runs_batches_until_nothing_old_is_left(store_case: StoreCase) -> None:
    store = store_case.store
    for event_id in range(1, 8):
        finish(store, event_id)
    store.claim(make_bounce(8), lease_seconds=LEASE)
    store.reject("postmark", b"kept", "field ID is missing")
    cut = instant()
    finish(store, 9)

    assert prune_before(store, cut, batch_size=3) == 7
    assert keys(store) == ["postmark:8", "postmark:9"]
    # With an age: the events just received are younger than a minute.
    assert prune(store, timedelta(minutes=1)) == 0
    assert prune(store, "1m", batch_size=1) == 0
    assert keys(store) == ["postmark:8", "postmark:9"]
    assert len(store.records(rejected=True, limit=None)) == 1


def test_counts_say_how_many_events_are_unfinished_and_rejected(store_case: StoreCase) -> None:
    store = store_case.store
    assert counted(store) == StoreCounts(0, 0, 0, 0)
    finish(store, 1)
    before_unfinished = datetime.now(UTC)
    store.claim(make_bounce(2), lease_seconds=LEASE)
    stuck = store.claim(make_bounce(3), lease_seconds=LEASE)
    store.release(stuck, finished=False)
    finish(store, 4)
    store.reject("postmark", b"one", "refused")
    store.resolve(store.reject("postmark", b"two", "refused"))
    store.reject("postmark", b"three", "refused")

    counts = counted(store)
    assert (counts.events, counts.unfinished) == (4, 2)
    assert (counts.rejected, counts.rejected_unresolved) == (3, 2)
    assert counts.prunable == 0
    [oldest] = [r.received_at for r in store.records(limit=None) if r.key == "postmark:2"]
    assert counts.oldest_unfinished is not None
    assert counts.oldest_unfinished.tzinfo is not None
    assert abs(counts.oldest_unfinished - oldest) < timedelta(milliseconds=1)
    assert counts.oldest_unfinished >= before_unfinished - timedelta(seconds=1)
    assert counts.summary().startswith("4 events, 2 unfinished (oldest received 20")
    assert counts.summary().endswith("), 2 rejected unresolved")
    # With a cut-off: what prune would delete now.
    assert counted(store, instant()).prunable == 2
    assert counted(store, before_unfinished).prunable == 1
    assert counts_of(store) == counted(store)


def test_prune_beside_live_claims_never_deletes_an_unfinished_event(
    store_case: StoreCase,
) -> None:
    """Writers claim events (every third left unfinished) while a prune loops over them all."""
    store = store_case.store
    writers, per_writer = 3, 30
    running = [writers]
    lock = threading.Lock()
    future = datetime.now(UTC) + timedelta(days=1)  # everything finished is old enough
    pruned: list[int] = []

    def work(n: int) -> None:
        if n == writers:  # the pruner, until the last writer is done
            while running[0]:
                pruned.append(prune_before(store, future, batch_size=5))
            return
        try:
            for i in range(per_writer):
                claim = store.claim(make_bounce(n * 1000 + i), lease_seconds=LEASE)
                assert claim.state is ClaimState.NEW
                store.complete(claim, "a", finished=i % 3 != 0)
        finally:
            with lock:
                running[0] -= 1

    run_threads(store_case, writers + 1, work)
    pruned.append(prune_before(store, future, batch_size=5))

    unfinished = {
        f"postmark:{n * 1000 + i}" for n in range(writers) for i in range(0, per_writer, 3)
    }
    assert keys(store) == sorted(unfinished)
    assert {r.key for r in store.records(unfinished=True, limit=None)} == unfinished
    assert sum(pruned) == writers * per_writer - len(unfinished)


@pytest.mark.parametrize("store_case", params(DATABASE_NAMES), indirect=True)
def test_a_broken_database_makes_prune_and_counts_raise_store_unavailable(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    finish(store, 1)
    later = datetime.now(UTC) + timedelta(days=1)
    with store_case.tables_renamed():
        with pytest.raises(StoreUnavailable):
            prunable(store).prune(later, limit=10)
        with pytest.raises(StoreUnavailable):
            counted(store)
        with pytest.raises(StoreUnavailable):
            prune_before(store, later)
    # Repaired: the same store object works again.
    assert counted(store).events == 1
    assert prunable(store).prune(later, limit=10) == 1
