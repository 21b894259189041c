"""SQLiteStore's batches: one transaction each, however large, and nothing kept on failure.

The store contract for batches (``tests/test_store_batch.py``) runs against
every store; these tests look inside SQLite: the statements a batch runs, a
file locked by another process, a read-only store, the settings and the layout
that keep a batch's writes few (completions keyed by the event's id, upgraded
in place from version 2).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.sqlite_connections import CACHE_KIB, WAL_AUTOCHECKPOINT
from bounce_middleware.sqlite_store import SCHEMA_VERSION, SQLiteStore
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


@pytest.mark.parametrize(("synchronous", "level"), [("NORMAL", 1), ("FULL", 2)])
def test_connections_get_the_larger_cache_and_checkpoint_interval_and_keep_durability(
    tmp_path: Path, synchronous: str, level: int
) -> None:
    store = SQLiteStore(tmp_path / "bounces.sqlite3", synchronous=synchronous)
    store.check()
    conn = store._db.connections.get()
    assert conn.execute("PRAGMA cache_size").fetchone() == (-CACHE_KIB,)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (WAL_AUTOCHECKPOINT,)
    assert (CACHE_KIB, WAL_AUTOCHECKPOINT) == (16_384, 10_000)
    # The durability setting is the one asked for, not traded for speed.
    assert conn.execute("PRAGMA synchronous").fetchone() == (level,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_a_batch_is_listed_in_its_own_order(store: SQLiteStore) -> None:
    batch = [make_bounce(n) for n in (907, 3, 450, 12, 999, 1)]
    claims = store.claim_many(batch, lease_seconds=LEASE)
    store.settle_many([Settlement(c, ("a",), True) for c in claims])
    # Newest first: the batch's last event first.
    assert [r.key for r in store.records()] == [b.key for b in reversed(batch)]


def test_completions_are_kept_by_the_event_id(store: SQLiteStore) -> None:
    batch = [make_bounce(n) for n in (5, 2, 9)]
    claims = store.claim_many(batch, lease_seconds=LEASE)
    store.settle_many([Settlement(c, ("a", "b"), True) for c in claims])
    single = store.claim(make_bounce(7), lease_seconds=LEASE)
    store.complete(single, "a", finished=True)
    conn = sqlite3.connect(store.path)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(bounce_completion)")]
        rows = conn.execute(
            "SELECT e.key, c.handler FROM bounce_completion AS c "
            "JOIN bounce_event AS e ON e.id = c.event ORDER BY c.event, c.handler"
        ).fetchall()
    finally:
        conn.close()
    assert columns == ["event", "handler", "completed_at"]
    # In the order the events arrived: each new completion goes to the table's end.
    assert rows == [
        ("postmark:5", "a"),
        ("postmark:5", "b"),
        ("postmark:2", "a"),
        ("postmark:2", "b"),
        ("postmark:9", "a"),
        ("postmark:9", "b"),
        ("postmark:7", "a"),
    ]
    assert {r.key: r.completed for r in store.records()}["postmark:7"] == {"a"}


# bounce-middleware 0.2's tables, schema version 2, as it created them.
V2_SCHEMA = (
    """CREATE TABLE bounce_event (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    received_at TEXT NOT NULL,
    finished_at TEXT,
    attempts INTEGER NOT NULL,
    body BLOB NOT NULL,
    lease_token TEXT,
    lease_expires REAL
)""",
    """CREATE TABLE bounce_completion (
    key TEXT NOT NULL REFERENCES bounce_event (key) ON DELETE CASCADE,
    handler TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (key, handler)
) WITHOUT ROWID""",
    """CREATE TABLE bounce_rejected (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL,
    resolved_at TEXT,
    body BLOB NOT NULL
)""",
    "CREATE TABLE bounce_schema (version INTEGER NOT NULL)",
    "INSERT INTO bounce_schema (version) VALUES (2)",
)

#: (event number, finished, lease expires, completed handlers) in the version-2 file,
#: stored in this order (ids 1, 2, 3, 4), keys not in id order.
V2_EVENTS = (
    (30, True, None, ("tests.a", "tests.b")),
    (10, False, None, ("tests.a",)),
    (20, False, 4e9, ("tests.b",)),
    (40, False, None, ()),
)


def make_v2_file(path: Path) -> None:
    """A version-2 store file with events, completions and a rejected record."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        for statement in V2_SCHEMA:
            conn.execute(statement)
        for n, finished, expires, completed in V2_EVENTS:
            conn.execute(
                """INSERT INTO bounce_event (key, provider, email, email_key, kind, type,
                   received_at, finished_at, attempts, body, lease_expires)
                   VALUES (?, 'postmark', ?, ?, 'hard', 'HardBounce', ?, ?, 1, ?, ?)""",
                (
                    f"postmark:{n}",
                    f"user{n}@example.com",
                    f"user{n}@example.com",
                    "2024-05-01T10:00:00.000000+00:00",
                    "2024-05-01T10:00:02.000000+00:00" if finished else None,
                    f'{{"ID": {n}}}'.encode(),
                    expires,
                ),
            )
            for handler in completed:
                conn.execute(
                    "INSERT INTO bounce_completion VALUES (?, ?, ?)",
                    (f"postmark:{n}", handler, "2024-05-01T10:00:01.000000+00:00"),
                )
        conn.execute(
            """INSERT INTO bounce_rejected (key, provider, reason, received_at, body)
               VALUES ('rejected:1', 'postmark', 'bad', '2024-05-01T10:00:00+00:00', x'7b7d')"""
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_version_2_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    make_v2_file(path)
    store = SQLiteStore(path)
    records = store.records()
    assert [(r.key, r.finished, r.completed) for r in records] == [
        (f"postmark:{n}", finished, frozenset(completed))
        for n, finished, _, completed in reversed(V2_EVENTS)
    ]
    assert [r.key for r in store.records(rejected=True)] == ["rejected:1"]
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("SELECT max(version) FROM bounce_schema").fetchone()
        columns = [row[1] for row in conn.execute("PRAGMA table_info(bounce_completion)")]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    assert version == SCHEMA_VERSION == 3
    assert columns == ["event", "handler", "completed_at"]
    assert "bounce_completion_v3" not in tables
    # Claims, one by one and in a batch, carry on with what version 2 recorded.
    done = store.claim(make_bounce(30), lease_seconds=LEASE)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"tests.a", "tests.b"}))
    claims = store.claim_many(
        [make_bounce(10), make_bounce(20), make_bounce(40), make_bounce(50)], lease_seconds=LEASE
    )
    assert [(c.state, c.completed) for c in claims] == [
        (ClaimState.RESUMED, frozenset({"tests.a"})),
        (ClaimState.BUSY, frozenset({"tests.b"})),
        (ClaimState.RESUMED, frozenset()),
        (ClaimState.NEW, frozenset()),
    ]
    runs = [c for c in claims if c.runs_handlers]
    store.settle_many([Settlement(c, ("tests.a", "tests.b"), True) for c in runs])
    after = {r.key: (r.finished, r.completed) for r in store.records()}
    both = frozenset({"tests.a", "tests.b"})
    assert after["postmark:10"] == after["postmark:50"] == (True, both)
    assert after["postmark:20"] == (False, frozenset({"tests.b"}))
    store.close()
    # A second store on the upgraded file finds the work done.
    again = SQLiteStore(path)
    assert len(again.records()) == 5
    again.close()
