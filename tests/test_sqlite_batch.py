"""SQLiteStore's batches: one transaction each, however large, and nothing kept on failure.

The store contract for batches (``tests/test_store_batch.py``) runs against
every store; these tests look inside SQLite: the statements a batch runs, a
file locked by another process, a read-only store.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import ClaimState, Settlement
from tests.store_apps import LEASE, make_bounce
from tests.test_store_batch import EXPECTED, prepare


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "bounces.sqlite3", timeout=0.05)
    yield store
    store.close()


@contextmanager
def transactions(store: SQLiteStore) -> Iterator[Counter[str]]:
    """Count the BEGIN, COMMIT and ROLLBACK statements this thread's connection runs."""
    store.check()
    # This thread's own connection, the one every call from this thread uses.
    conn = store._db.connections.get()
    seen: Counter[str] = Counter()

    def trace(statement: str) -> None:
        word = statement.split(None, 1)[0].upper()
        if word in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen[word] += 1

    conn.set_trace_callback(trace)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def test_a_batch_of_a_thousand_events_is_claimed_and_settled_in_one_transaction_each(
    store: SQLiteStore,
) -> None:
    batch = [make_bounce(n) for n in range(1000)]
    # Stored events of every kind, spread over the batch (beyond one IN list of keys too).
    kinds = ("done", "released", "busy", "expired")
    states = {n: kinds[i % 4] for i, n in enumerate(range(3, 1000, 7))}
    for n, state in states.items():
        prepare(store, batch[n], state)
    with transactions(store) as seen:
        claims = store.claim_many(batch, lease_seconds=LEASE)
    assert seen == {"BEGIN": 1, "COMMIT": 1}
    assert [c.key for c in claims] == [b.key for b in batch]
    assert [c.state for c in claims] == [EXPECTED[states.get(n, "new")] for n in range(1000)]
    running = [c for c in claims if c.runs_handlers]
    with transactions(store) as seen:
        store.settle_many([Settlement(c, ("a", "b"), True) for c in running])
    assert seen == {"BEGIN": 1, "COMMIT": 1}
    records = store.records(limit=None)
    assert len(records) == 1000
    expected = {
        "new": (frozenset({"a", "b"}), True),
        "released": (frozenset({"a", "b"}), True),
        "expired": (frozenset({"a", "b"}), True),
        "done": (frozenset({"a"}), True),
        # Held by another delivery: this one ran nothing and settled nothing.
        "busy": (frozenset({"a"}), False),
    }
    by_key = {r.key: (r.completed, r.finished) for r in records}
    assert [by_key[b.key] for b in batch] == [expected[states.get(n, "new")] for n in range(1000)]


def test_empty_batches_begin_no_transaction(store: SQLiteStore) -> None:
    with transactions(store) as seen:
        assert store.claim_many([], lease_seconds=LEASE) == []
        store.settle_many([])
    assert seen == {}


def test_a_file_locked_elsewhere_fails_batches_and_keeps_nothing(store: SQLiteStore) -> None:
    [held] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    # A long write elsewhere (a backup, an sqlite3 shell left open) holds the lock.
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.claim_many([make_bounce(2), make_bounce(3)], lease_seconds=LEASE)
        with pytest.raises(StoreUnavailable, match="locked"):
            store.settle_many([Settlement(held, ("a",), True)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [record] = store.records()
    assert (record.key, record.completed, record.finished) == ("postmark:1", frozenset(), False)
    claims = store.claim_many([make_bounce(1), make_bounce(2)], lease_seconds=LEASE)
    assert [c.state for c in claims] == [ClaimState.BUSY, ClaimState.NEW]


def test_a_read_only_store_refuses_batches(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    writable = SQLiteStore(path)
    [claim] = writable.claim_many([make_bounce(1)], lease_seconds=LEASE)
    read_only = SQLiteStore(path, read_only=True)
    with pytest.raises(StoreUnavailable):
        read_only.claim_many([make_bounce(2)], lease_seconds=LEASE)
    with pytest.raises(StoreUnavailable):
        read_only.settle_many([Settlement(claim, ("a",), True)])
    assert [(r.key, r.finished) for r in read_only.records()] == [("postmark:1", False)]
    read_only.close()
    writable.close()
