"""SQLiteStore upgrades a version-1 file in place, once, even with processes starting together.

The version-1 file is made here by version 1's own statements (copied from
bounce-middleware 0.1's ``sqlite_store.py``), with rows written the way it wrote
them: ``email_lower`` was Python's ``str.lower()``, which neither folds "ß" nor
normalises decomposed accents.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bounce_middleware import ClaimState, StoreUnavailable
from bounce_middleware.sqlite_store import SCHEMA_VERSION, SQLiteStore
from tests.store_apps import LEASE, make_bounce

# bounce-middleware 0.1, schema version 1, verbatim.
V1_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bounce_event (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        provider TEXT NOT NULL,
        email TEXT NOT NULL,
        email_lower TEXT NOT NULL,
        kind TEXT NOT NULL,
        type TEXT NOT NULL,
        received_at TEXT NOT NULL,
        finished_at TEXT,
        attempts INTEGER NOT NULL,
        body BLOB NOT NULL,
        lease_token TEXT,
        lease_expires REAL
    )""",
    """CREATE TABLE IF NOT EXISTS bounce_completion (
        key TEXT NOT NULL REFERENCES bounce_event (key) ON DELETE CASCADE,
        handler TEXT NOT NULL,
        completed_at TEXT NOT NULL,
        PRIMARY KEY (key, handler)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS bounce_schema (version INTEGER NOT NULL)",
)
V1_INSERT = """INSERT INTO bounce_event (key, provider, email, email_lower, kind, type,
       received_at, attempts, body, lease_token, lease_expires)
   VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
   ON CONFLICT (key) DO NOTHING"""

#: (id, address, finished, completed handlers) of the events in the version-1 file.
V1_EVENTS = (
    (1, "straße@example.de", True, ("tests.a", "tests.b")),
    (2, "E\u0301mile@example.com", False, ("tests.a",)),
    (3, "ann@example.com", False, ()),
)


def make_v1_file(path: Path) -> None:
    """A version-1 store file as bounce-middleware 0.1 left it, with an application table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in V1_SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO bounce_schema (version) VALUES (?)", (1,))
        conn.execute("COMMIT")
        conn.execute("CREATE TABLE app_user (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("PRAGMA user_version = 7")
        for n, email, finished, completed in V1_EVENTS:
            conn.execute(
                V1_INSERT,
                (
                    f"postmark:{n}",
                    "postmark",
                    email,
                    email.lower(),
                    "hard",
                    "HardBounce",
                    f"2024-05-0{n}T10:00:00.000000+00:00",
                    f'{{"ID": {n}}}'.encode(),
                    None,
                    None,
                ),
            )
            for handler in completed:
                conn.execute(
                    "INSERT INTO bounce_completion VALUES (?, ?, ?)",
                    (f"postmark:{n}", handler, "2024-05-01T10:00:01.000000+00:00"),
                )
            if finished:
                conn.execute(
                    "UPDATE bounce_event SET finished_at = ? WHERE key = ?",
                    ("2024-05-01T10:00:02.000000+00:00", f"postmark:{n}"),
                )
    finally:
        conn.close()


def schema_of(path: Path) -> tuple[int, set[str], list[str]]:
    """(schema version, table names, columns of bounce_event) of a file."""
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("SELECT max(version) FROM bounce_schema").fetchone()
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        columns = [row[1] for row in conn.execute("PRAGMA table_info(bounce_event)")]
    finally:
        conn.close()
    return int(version), tables, columns


def test_the_version_1_file_is_what_version_1_wrote(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    make_v1_file(path)
    version, tables, columns = schema_of(path)
    assert version == 1
    assert "email_lower" in columns
    assert "bounce_rejected" not in tables


def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    make_v1_file(path)
    store = SQLiteStore(path)
    # What was there is all there, as it was.
    records = store.records()
    assert [(r.key, r.email, r.finished, r.completed) for r in records] == [
        (f"postmark:{n}", email, finished, frozenset(completed))
        for n, email, finished, completed in reversed(V1_EVENTS)
    ]
    assert records[-1].body == b'{"ID": 1}'
    version, tables, columns = schema_of(path)
    assert version == SCHEMA_VERSION == 3
    assert {"bounce_rejected", "app_user"} <= tables
    assert "email_key" in columns and "email_lower" not in columns
    # The folded addresses were recomputed: version 1's lower() matched neither.
    assert [r.key for r in store.records(email="STRASSE@example.de")] == ["postmark:1"]
    assert [r.key for r in store.records(email="émile@EXAMPLE.com")] == ["postmark:2"]
    # Claims carry on where version 1 left off.
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE
    resumed = store.claim(make_bounce(2), lease_seconds=LEASE)
    assert (resumed.state, resumed.completed) == (ClaimState.RESUMED, frozenset({"tests.a"}))
    assert store.claim(make_bounce(4), lease_seconds=LEASE).state is ClaimState.NEW
    key = store.reject("postmark", b"{}", "required field ID is missing")
    assert [r.key for r in store.records(rejected=True)] == [key]
    store.close()
    # The application's own tables and version are untouched.
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_a_read_only_store_on_a_version_1_file_says_to_open_it_writable(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    make_v1_file(path)
    reader = SQLiteStore(path, read_only=True)
    with pytest.raises(
        StoreUnavailable, match="schema version 1 is older .* open it once writable"
    ):
        reader.records()
    reader.close()
    assert schema_of(path)[0] == 1
    writer = SQLiteStore(path)
    writer.check()
    writer.close()
    reader = SQLiteStore(path, read_only=True)
    assert len(reader.records()) == len(V1_EVENTS)
    reader.close()


_UPGRADING_PROCESS = """
import sys
from bounce_middleware import Bounce, BounceKind
from bounce_middleware.sqlite_store import SQLiteStore

store = SQLiteStore(sys.argv[1], timeout=20)
states = []
for n in range(1, 11):
    bounce = Bounce(provider="postmark", id=str(n), email="a@example.com",
                    kind=BounceKind.HARD, type="HardBounce")
    claim = store.claim(bounce, lease_seconds=60)
    if claim.runs_handlers:
        store.complete(claim, "tests.c", finished=True)
    states.append(claim.state.value)
print(" ".join(states), len(store.records(email="STRASSE@EXAMPLE.DE")))
store.close()
"""


def test_processes_starting_together_on_a_version_1_file_upgrade_it_once(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    make_v1_file(path)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADING_PROCESS, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    states: Counter[str] = Counter()
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        *claimed, found = out.split()
        assert found == "1"
        states.update(claimed)
    # Event 1 was finished under version 1; 2 and 3 resumed once each; 4-10 are new.
    assert states["new"] == 7
    assert states["resumed"] == 2
    assert states["new"] + states["resumed"] + states["done"] + states["busy"] == 60
    version, _, columns = schema_of(path)
    assert (version, columns.count("email_key")) == (3, 1)
    store = SQLiteStore(path)
    records = store.records(limit=None)
    assert len(records) == 10
    assert all(r.finished for r in records)
    store.close()
