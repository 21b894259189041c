"""SQLiteStore under the middleware when its file is unusable: 503, nothing run, recovery.

Every breakage here is a real one (a file where the directory should be, a
lock held elsewhere, a read-only file...), made without root privileges mattering.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.testing import postmark_bounce
from tests.store_apps import PASSWORD, PATH, USER, Audit, Flaky, downstream, make_app, post


@dataclass
class Breakage:
    """A real way to make a SQLite store unusable, even for root, and its repair."""

    path: Path
    repair: Callable[[], None]


def _parent_is_a_file(tmp: Path) -> Breakage:
    parent = tmp / "data"
    parent.write_text("a file where the directory should be")

    def repair() -> None:
        parent.unlink()
        parent.mkdir()

    return Breakage(parent / "bounces.sqlite3", repair)


def _path_is_a_directory(tmp: Path) -> Breakage:
    path = tmp / "bounces.sqlite3"
    path.mkdir()
    return Breakage(path, path.rmdir)


def _directory_missing(tmp: Path) -> Breakage:
    path = tmp / "missing" / "bounces.sqlite3"
    return Breakage(path, path.parent.mkdir)


def _not_a_database(tmp: Path) -> Breakage:
    path = tmp / "bounces.sqlite3"
    path.write_bytes(b"this is not a SQLite database, just some bytes\n" * 200)
    return Breakage(path, path.unlink)


def _locked_past_the_timeout(tmp: Path) -> Breakage:
    path = tmp / "bounces.sqlite3"
    SQLiteStore(path).check()
    # A long write elsewhere (a backup, an sqlite3 shell left open) holds the lock.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    def repair() -> None:
        holder.execute("ROLLBACK")
        holder.close()

    return Breakage(path, repair)


@pytest.mark.parametrize(
    "breakage",
    [
        _parent_is_a_file,
        _path_is_a_directory,
        _directory_missing,
        _not_a_database,
        _locked_past_the_timeout,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_an_unusable_store_answers_503_runs_nothing_and_recovers_once_repaired(
    tmp_path: Path, breakage: Callable[[Path], Breakage], caplog: pytest.LogCaptureFixture
) -> None:
    broken = breakage(tmp_path)
    store = SQLiteStore(broken.path, timeout=0.05)
    audit = Audit()
    app = make_app(store, audit)
    payload = postmark_bounce()
    response = post(app, payload, 503)
    assert response.headers["Retry-After"] == "60"
    assert audit.calls == []
    assert "store unavailable" in caplog.text
    broken.repair()
    post(app, payload, 200)
    post(app, payload, 200)
    assert audit.calls == [f"postmark:{payload['ID']}"]
    store.close()


def test_a_read_only_store_answers_503_and_runs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    SQLiteStore(path).check()
    audit = Audit()
    read_only = SQLiteStore(path, read_only=True)
    payload = postmark_bounce()
    post(make_app(read_only, audit), payload, 503)
    assert audit.calls == []
    writable = SQLiteStore(path)
    post(make_app(writable, audit), payload, 200)
    assert audit.calls == [f"postmark:{payload['ID']}"]
    read_only.close()
    writable.close()


def test_a_completion_that_cannot_be_recorded_is_retried(tmp_path: Path) -> None:
    """The documented at-least-once gap: a handler whose success was not stored runs again."""
    path = tmp_path / "bounces.sqlite3"
    store = SQLiteStore(path, timeout=0.05)
    locks: list[sqlite3.Connection] = []
    calls: list[str] = []

    def grab_the_lock(bounce: Bounce) -> None:
        calls.append(bounce.key)
        if not locks:
            lock = sqlite3.connect(path, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            locks.append(lock)

    # A lease of 10 ms lets the redelivery take over at once instead of after minutes.
    app = make_app(store, grab_the_lock, lease_seconds=0.01)
    payload = postmark_bounce()
    post(app, payload, 503)
    locks[0].execute("ROLLBACK")
    locks[0].close()
    time.sleep(0.02)
    post(app, payload, 200)
    post(app, payload, 200)
    assert len(calls) == 2
    assert store.records()[0].finished
    store.close()


def first(bounce: Bounce) -> None:
    """A module-level handler: its default name is ``tests.test_sqlite_failures.first``."""
    first_calls.append(bounce.key)


first_calls: list[str] = []


def test_handler_names_are_stable_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bounces.sqlite3"
    payload = postmark_bounce()
    first_calls.clear()
    renamed_calls: list[str] = []

    def build(store: SQLiteStore, flaky: Flaky) -> TestApp:
        middleware = BounceMiddleware(
            downstream, path=PATH, credentials=[f"{USER}:{PASSWORD}"], store=store
        )
        middleware.add_handler(first)
        middleware.add_handler(flaky)
        # A lambda's own name is not unique; give it one that stays put.
        middleware.add_handler(lambda b: renamed_calls.append(b.key), name="audit-log")
        return TestApp(middleware)

    before = SQLiteStore(path)
    post(build(before, Flaky()), payload, 500)
    before.close()

    # A new process: new store object, new handler objects, the same file.
    after = SQLiteStore(path)
    fixed = Flaky()
    fixed.fixed = True
    post(build(after, fixed), payload, 200)
    key = f"postmark:{payload['ID']}"
    assert first_calls == [key]
    assert renamed_calls == [key]
    assert fixed.calls == [key]
    assert after.records()[0].completed == {
        "tests.test_sqlite_failures.first",
        "tests.store_apps.Flaky",
        "audit-log",
    }
    after.close()
