"""SQLiteStore beyond the contract: its file, WAL, processes, schema upgrades, and failures.

The Store protocol itself is checked for every store by ``tests/test_store.py``.
"""

from __future__ import annotations

import gc
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounce_middleware import (
    ClaimState,
    ConfigurationError,
    MemoryStore,
    StoreUnavailable,
    open_store,
)
from bounce_middleware.model import fold_address
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import address_key, storable
from tests.store_apps import (
    LEASE,
    make_bounce,
)

# -- SQLiteStore specifics ---------------------------------------------------


def test_sqlite_store_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    first = SQLiteStore(path)
    claim = first.claim(make_bounce(1, body=b"body"), lease_seconds=LEASE)
    first.complete(claim, "tests.handlers.a")
    first.release(claim, finished=False)
    first.close()

    second = SQLiteStore(path)
    resumed = second.claim(make_bounce(1, body=b"body"), lease_seconds=LEASE)
    assert resumed.state is ClaimState.RESUMED
    assert resumed.completed == {"tests.handlers.a"}
    second.close()


def test_sqlite_store_writes_a_new_event_in_one_statement(tmp_path: Path) -> None:
    # The claim path is what every webhook pays: one INSERT, nothing read, nothing more.
    store = SQLiteStore(tmp_path / "bounces.sqlite3")
    store.check()
    statements: list[str] = []
    store._db.connections.get().set_trace_callback(statements.append)
    claim = store.claim(make_bounce(1, email="Émile@Example.com"), lease_seconds=LEASE)
    assert claim.state is ClaimState.NEW
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "COMMIT"]
    statements.clear()
    store.complete(claim, "tests.handler", finished=True)
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]
    store.close()


@settings(max_examples=500, deadline=None)
@given(st.text() | st.text(st.characters(max_codepoint=127)))
def test_the_stored_address_key_is_the_folded_storable_address(address: str) -> None:
    # address_key() takes a shortcut for ASCII; it must give what the protocol says.
    assert address_key(address) == fold_address(storable(address))


def test_sqlite_store_uses_wal_and_keeps_to_its_own_tables(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    with sqlite3.connect(path) as app_db:
        app_db.execute("CREATE TABLE user (id INTEGER PRIMARY KEY, email TEXT)")
        app_db.execute("PRAGMA user_version = 7")
    app_db.close()
    store = SQLiteStore(path, synchronous="full")
    store.claim(make_bounce(1), lease_seconds=LEASE)
    store.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # The application's schema version is its own business.
        assert check.execute("PRAGMA user_version").fetchone() == (7,)
        tables = {name for (name,) in check.execute("SELECT name FROM sqlite_master")}
        assert {"user", "bounce_event", "bounce_completion", "bounce_rejected"} <= tables
        # No index beyond the unique keys: each would be written on every claim.
        indexes = check.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"
        ).fetchall()
        assert sorted(indexes) == [
            ("sqlite_autoindex_bounce_event_1", "bounce_event"),
            ("sqlite_autoindex_bounce_rejected_1", "bounce_rejected"),
        ]
    finally:
        check.close()


def test_sqlite_store_touches_no_file_until_used(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    store = SQLiteStore(path)
    assert not path.exists()
    store.check()
    assert path.exists()
    assert store.records() == []
    store.close()


def test_sqlite_store_resolves_a_relative_path_when_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("bounces.sqlite3")
    monkeypatch.chdir("/")
    assert store.path == tmp_path / "bounces.sqlite3"
    store.check()
    assert (tmp_path / "bounces.sqlite3").exists()
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"path": ":memory:"}, "MemoryStore"),
        ({"path": ""}, "MemoryStore"),
        ({"path": "x.sqlite3", "synchronous": "sometimes"}, "synchronous"),
        ({"path": "x.sqlite3", "timeout": -1}, "timeout"),
    ],
)
def test_sqlite_store_configuration_errors(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SQLiteStore(**args)


def test_sqlite_store_read_only_lists_but_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    writer = SQLiteStore(path)
    writer.release(writer.claim(make_bounce(1), lease_seconds=LEASE), finished=True)
    reader = SQLiteStore(path, read_only=True)
    assert [r.key for r in reader.records()] == ["postmark:1"]
    with pytest.raises(StoreUnavailable, match="readonly"):
        reader.claim(make_bounce(2), lease_seconds=LEASE)
    writer.close()
    reader.close()


def test_sqlite_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    SQLiteStore(path).check()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE bounce_schema SET version = version + 1")
    db.close()
    store = SQLiteStore(path)
    with pytest.raises(StoreUnavailable, match="newer"):
        store.records()
    store.close()


def test_sqlite_store_names_a_missing_directory(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing" / "bounces.sqlite3")
    with pytest.raises(StoreUnavailable, match="does not exist; it is not created"):
        store.check()
    (tmp_path / "missing").mkdir()
    store.check()
    store.close()


def test_sqlite_store_is_usable_again_after_close(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bounces.sqlite3")
    store.claim(make_bounce(1), lease_seconds=LEASE)
    store.close()
    assert [r.key for r in store.records()] == ["postmark:1"]
    store.close()


def test_sqlite_store_closes_the_connection_of_a_finished_thread(tmp_path: Path) -> None:
    # Django's runserver, for one, starts a thread per request.
    store = SQLiteStore(tmp_path / "bounces.sqlite3")
    for _ in range(20):
        thread = threading.Thread(target=store.records)
        thread.start()
        thread.join(timeout=10)
    gc.collect()
    assert len(store._db.connections) <= 1
    store.close()
    assert len(store._db.connections) == 0


_PROCESS_SCRIPT = """
import sys
from bounce_middleware import Bounce, BounceKind
from bounce_middleware.sqlite_store import SQLiteStore

store = SQLiteStore(sys.argv[1], timeout=20)
worker = sys.argv[2]
states = []
for n in range(20):
    for event in (f"shared-{n}", f"{worker}-{n}"):
        bounce = Bounce(provider="p", id=event, email="a@example.com",
                        kind=BounceKind.HARD, type="HardBounce")
        claim = store.claim(bounce, lease_seconds=60)
        if claim.runs_handlers:
            store.complete(claim, "h")
            store.release(claim, finished=True)
        states.append(claim.state.value)
store.close()
print(" ".join(states))
"""


def test_sqlite_store_processes_starting_together_on_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_SCRIPT, str(path), f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    states: Counter[str] = Counter()
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        states.update(out.split())
    assert states["new"] == 20 + 6 * 20
    assert states["new"] + states["done"] + states["busy"] == 6 * 40
    store = SQLiteStore(path)
    records = store.records(limit=None)
    assert len(records) == 140
    assert all(r.finished and r.completed == {"h"} for r in records)
    store.close()


# -- open_store --------------------------------------------------------------


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_store("memory://"), MemoryStore)
    relative = open_store("sqlite:///data/bounces.sqlite3")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == tmp_path / "data" / "bounces.sqlite3"
    absolute = open_store(f"sqlite:///{tmp_path}/b.sqlite3?timeout=0.5&synchronous=FULL")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == tmp_path / "b.sqlite3"
    assert (absolute.timeout, absolute.synchronous, absolute.read_only) == (0.5, "FULL", False)
    read_only = open_store("sqlite:///b.sqlite3?mode=ro")
    assert isinstance(read_only, SQLiteStore)
    assert read_only.read_only


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///", "needs a file path"),
        ("sqlite:///b.sqlite3?timeout=soon", "timeout"),
        ("sqlite:///b.sqlite3?journal=off", "unknown store URL option"),
        ("sqlite:///b.sqlite3?mode=memory", "unknown store URL option"),
        ("sqlite:///b.sqlite3?synchronous=maybe", "synchronous"),
        ("sqlite:///b.sqlite3?&&", "malformed"),
        ("mysql://db/bounces", "unsupported store URL"),
    ],
)
def test_open_store_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_store(url)
