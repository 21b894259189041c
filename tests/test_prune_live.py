"""A prune running in batches, in a process of its own, beside live webhooks: it never
deletes an unfinished event, not even one whose handlers are running at that moment.

Writers post Postmark bounces through the real middleware (threads, one WebTest
app each) to a SQLite file and to the real PostgreSQL server; every fourth event's
last handler fails, so it stays unfinished. The first handler looks the event up in
the store while the delivery holds it: it must be there, unfinished. Meanwhile
another process prunes with a cut-off in the future, so that every finished event
is old enough the moment it finishes, in batches of ten, over and over. The
writers post in two rounds, and after each the test waits until the pruner has
deleted every finished event: no clock decides whether the prune ran beside them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware, Store
from bounce_middleware.retention import prune_before
from bounce_middleware.store import open_store
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.postgres import PostgresServer
from tests.postgres_store_case import database_url, empty
from tests.store_apps import PASSWORD, PATH, USER, downstream

WRITERS, PER_WRITER = 4, 100

PRUNER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bounce_middleware.retention import prune_before
from bounce_middleware.store import open_store

store = open_store(sys.argv[1])
stop = Path(sys.argv[2])
future = datetime.now(UTC) + timedelta(days=1)
passes = deleted = 0
while not stop.exists():
    deleted += prune_before(store, future, batch_size=10)
    passes += 1
print(passes, deleted)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bounces.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = database_url(server)
    empty(url)
    yield url


class Handlers:
    """``check`` (the event is stored and unfinished while its delivery runs) and
    ``flaky`` (fails for every fourth event)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.missing: list[str] = []
        self.lock = threading.Lock()

    def check(self, bounce: Bounce) -> None:
        time.sleep(0.002)  # a handler's work: the prune runs meanwhile
        waiting = {r.key for r in self.store.records(unfinished=True, limit=None)}
        if bounce.key not in waiting:
            with self.lock:
                self.missing.append(bounce.key)

    def flaky(self, bounce: Bounce) -> None:
        if int(bounce.id or 0) % 4 == 0:
            raise RuntimeError("the mail server is down")


def wait_until_only(store: Store, keys: set[str], what: str) -> None:
    """Wait for the pruner until ``store`` holds exactly ``keys`` (a generous deadline
    against a hung pruner, not a measure of its speed)."""
    deadline = time.monotonic() + 120
    while {r.key for r in store.records(limit=None)} != keys:
        assert time.monotonic() < deadline, f"the pruner never {what}"
        time.sleep(0.01)


def test_a_prune_beside_live_webhooks_never_deletes_an_unfinished_event(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url)
    handlers = Handlers(store)
    middleware = BounceMiddleware(
        downstream, path=PATH, credentials=[f"{USER}:{PASSWORD}"], store=store
    )
    middleware.add_handler(handlers.check, name="check")
    middleware.add_handler(handlers.flaky, name="flaky")
    stop = tmp_path / "stop"
    pruner = subprocess.Popen(
        [sys.executable, "-c", PRUNER, store_url, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    statuses: dict[int, int] = {}
    seconds: list[float] = []
    errors: list[BaseException] = []
    half = PER_WRITER // 2

    def write(n: int, part: range) -> None:
        app = TestApp(middleware)
        headers = auth_headers(USER, PASSWORD)
        try:
            for i in part:
                event_id = 1 + n * PER_WRITER + i
                started = time.perf_counter()
                answer = app.post_json(
                    PATH, postmark_bounce(ID=event_id), headers=headers, status="*"
                )
                seconds.append(time.perf_counter() - started)
                statuses[event_id] = answer.status_int
        except BaseException as exc:  # reported below
            errors.append(exc)

    def unfinished() -> set[str]:
        return {f"postmark:{e}" for e in statuses if e % 4 == 0}

    try:
        # Two rounds of webhooks, each followed by the pruner (which never stops
        # meanwhile) deleting every finished event: its deletions come between writes.
        for part in (range(half), range(half, PER_WRITER)):
            threads = [threading.Thread(target=write, args=(n, part)) for n in range(WRITERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert errors == []
            wait_until_only(store, unfinished(), "deleted the finished events")
    finally:
        stop.touch()
        out, _ = pruner.communicate(timeout=60)
    assert pruner.returncode == 0 and out is not None
    passes, deleted_meanwhile = map(int, out.split())
    deleted_after = prune_before(store, datetime.now(UTC) + timedelta(days=1), batch_size=10)

    events = range(1, WRITERS * PER_WRITER + 1)
    failing = {event_id for event_id in events if event_id % 4 == 0}
    assert statuses == {e: 500 if e in failing else 200 for e in events}  # never a 503
    assert handlers.missing == []
    left = store.records(limit=None)
    assert sorted(r.key for r in left) == sorted(f"postmark:{e}" for e in failing)
    assert all(not r.finished and r.completed == {"check"} for r in left)
    # The pruner deleted every finished event, in passes before and after the second round.
    assert (deleted_meanwhile, deleted_after) == (len(events) - len(failing), 0)
    assert passes >= 2
    print(
        f"\n{store_url.split(':')[0]}: {passes} prune passes beside {len(events)} webhooks; "
        f"webhook p50 {statistics.median(seconds) * 1000:.1f} ms, "
        f"max {max(seconds) * 1000:.1f} ms"
    )
    close = getattr(store, "close", None)
    if close is not None:
        close()
