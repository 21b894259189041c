"""The store protocol, run against MemoryStore and SQLiteStore, and the middleware's use of it."""

from __future__ import annotations

import gc
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from bounce_middleware import (
    Bounce,
    BounceKind,
    BounceMiddleware,
    ClaimState,
    ConfigurationError,
    MemoryStore,
    Store,
    StoreUnavailable,
    open_store,
)
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.testing import auth_headers, postmark_bounce

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "s3cret"
AUTH = auth_headers(USER, PASSWORD)
LEASE = 60.0

AnyStore = MemoryStore | SQLiteStore


def make_bounce(
    event_id: int | str,
    email: str = "ann@example.com",
    kind: BounceKind = BounceKind.HARD,
    body: bytes = b"{}",
) -> Bounce:
    return Bounce(
        provider="postmark", id=str(event_id), email=email, kind=kind, type="HardBounce", body=body
    )


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    made: AnyStore = (
        MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "bounces.sqlite3")
    )
    yield made
    made.close()


# -- the protocol ------------------------------------------------------------


def test_shipped_stores_implement_the_protocol(store: AnyStore) -> None:
    assert isinstance(store, Store)


def test_first_claim_records_the_event_and_takes_a_lease(store: AnyStore) -> None:
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
    assert record.completed == frozenset()
    assert record.received_at.tzinfo is not None
    assert abs((datetime.now(UTC) - record.received_at).total_seconds()) < 60


def test_a_second_claim_during_the_lease_is_busy(store: AnyStore) -> None:
    first = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(first, "a")
    second = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert second.state is ClaimState.BUSY
    assert not second.runs_handlers
    assert second.token == ""
    assert second.completed == {"a"}


def test_a_finished_event_is_done(store: AnyStore) -> None:
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.complete(claim, "b")
    store.release(claim, finished=True)
    again = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert again.state is ClaimState.DONE
    assert again.completed == {"a", "b"}
    assert not again.runs_handlers
    [record] = store.records()
    assert record.finished
    assert record.attempts == 1


def test_a_released_unfinished_event_resumes_with_its_completed_handlers(store: AnyStore) -> None:
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.release(claim, finished=False)
    resumed = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert resumed.state is ClaimState.RESUMED
    assert resumed.completed == {"a"}
    assert resumed.token and resumed.token != claim.token
    [record] = store.records()
    assert record.attempts == 2
    assert not record.finished


def test_an_expired_lease_is_taken_over(store: AnyStore) -> None:
    # A worker that died while running handlers never releases; its lease runs out.
    crashed = store.claim(make_bounce(1), lease_seconds=0)
    store.complete(crashed, "a")
    taken = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert taken.state is ClaimState.RESUMED
    assert taken.completed == {"a"}


def test_a_stale_claim_does_not_release_the_lease_of_its_successor(store: AnyStore) -> None:
    slow = store.claim(make_bounce(1), lease_seconds=0)
    successor = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert successor.state is ClaimState.RESUMED
    store.release(slow, finished=False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY
    store.release(successor, finished=False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.RESUMED


def test_completing_twice_is_harmless(store: AnyStore) -> None:
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.complete(claim, "a")
    assert store.records()[0].completed == {"a"}


def test_completing_the_last_handler_can_finish_the_event(store: AnyStore) -> None:
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(claim, "a")
    store.complete(claim, "b", finished=True)
    done = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a", "b"}))
    assert store.records()[0].finished


def test_a_stale_claim_finishing_leaves_the_successors_lease(store: AnyStore) -> None:
    slow = store.claim(make_bounce(1), lease_seconds=0)
    successor = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(slow, "a", finished=True)
    # The event is finished (its last handler completed), and nobody else's lease was touched.
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE
    store.release(successor, finished=False)


def test_records_newest_first_and_filtered(store: AnyStore) -> None:
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
    assert keys(limit=2) == ["4", "3"]
    assert keys(limit=None) == ["4", "3", "2", "1"]
    assert keys(email="nobody@example.com") == []


def test_concurrent_claims_let_exactly_one_delivery_run(store: AnyStore) -> None:
    threads = 16
    barrier = threading.Barrier(threads)
    states: list[ClaimState] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=10)
            states.append(store.claim(make_bounce(1), lease_seconds=LEASE).state)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=deliver) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert errors == []
    assert Counter(states) == {ClaimState.NEW: 1, ClaimState.BUSY: threads - 1}


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
        assert {"user", "bounce_event", "bounce_completion", "bounce_schema"} <= tables
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
    assert len(store._open) <= 1
    store.close()
    assert store._open == {}


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
        ("postgresql://db/bounces", "unsupported store URL"),
    ],
)
def test_open_store_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_store(url)


# -- the middleware with a store ---------------------------------------------


def downstream(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


class Audit:
    """A handler that logs every call; its default name is stable across restarts."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, bounce: Bounce) -> None:
        self.calls.append(bounce.key)


class Flaky(Audit):
    """Fails until ``fixed`` is set, like a handler whose database is down."""

    fixed = False

    def __call__(self, bounce: Bounce) -> None:
        super().__call__(bounce)
        if not self.fixed:
            raise RuntimeError("the user database is down")


def make_app(store: Store, *handlers: Callable[[Bounce], object], **options: Any) -> TestApp:
    return TestApp(
        BounceMiddleware(
            downstream,
            path=PATH,
            credentials=[f"{USER}:{PASSWORD}"],
            handlers=handlers,
            store=store,
            **options,
        )
    )


def post(app: TestApp, payload: dict[str, Any], status: int) -> Any:
    return app.post(
        PATH,
        json.dumps(payload),
        headers={**AUTH, "Content-Type": "application/json"},
        status=status,
    )


def test_the_event_is_recorded_before_any_handler_runs(store: AnyStore) -> None:
    seen: list[tuple[str, bool]] = []

    def look(bounce: Bounce) -> None:
        seen.extend((r.key, r.finished) for r in store.records())

    payload = postmark_bounce(ID=7)
    post(make_app(store, look), payload, 200)
    assert seen == [("postmark:7", False)]
    [record] = store.records()
    assert record.finished
    assert json.loads(record.body) == payload


def test_a_completed_event_redelivered_runs_nothing_and_answers_200(store: AnyStore) -> None:
    audit = Audit()
    app = make_app(store, audit)
    payload = postmark_bounce()
    post(app, payload, 200)
    response = post(app, payload, 200)
    assert "already processed" in response.text
    assert audit.calls == [f"postmark:{payload['ID']}"]


def test_after_a_failure_the_redelivery_runs_only_what_did_not_complete(store: AnyStore) -> None:
    audit, flaky = Audit(), Flaky()
    app = make_app(store, audit, flaky)
    payload = postmark_bounce()
    post(app, payload, 500)
    post(app, payload, 500)
    flaky.fixed = True
    post(app, payload, 200)
    post(app, payload, 200)
    key = f"postmark:{payload['ID']}"
    assert audit.calls == [key]
    assert flaky.calls == [key, key, key]
    [record] = store.records()
    assert record.finished
    assert record.attempts == 3
    assert record.completed == {"tests.test_store.Audit", "tests.test_store.Flaky"}


def test_a_delivery_overlapping_a_running_one_answers_503_and_runs_nothing(
    store: AnyStore,
) -> None:
    audit = Audit()
    app = make_app(store, audit, retry_after=42)
    payload = postmark_bounce()
    # Another worker is in the middle of this event's handlers.
    running = store.claim(make_bounce(payload["ID"]), lease_seconds=LEASE)
    response = post(app, payload, 503)
    assert response.headers["Retry-After"] == "42"
    assert audit.calls == []
    store.release(running, finished=False)
    post(app, payload, 200)
    assert audit.calls == [f"postmark:{payload['ID']}"]


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
    """A module-level handler: its default name is ``tests.test_store.first``."""
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
        "tests.test_store.first",
        "tests.test_store.Flaky",
        "audit-log",
    }
    after.close()
