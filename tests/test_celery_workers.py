"""Handlers in Celery, end to end: a real Redis broker and real ``celery worker`` processes.

The webhook answers in the test process (:func:`tests.celery_app.make_middleware`
over WebTest); workers, and beat, are subprocesses on the same store and
broker (``tests/celery_harness.py``). Stores: SQLiteStore and PostgresStore
(handlers recorded by the middleware), and SQLAlchemyStore on SQLite and on
PostgreSQL, where :func:`tests.celery_app.record` commits its effect and its
completion together (exactly once, even across a killed worker).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from bounce_middleware import BounceMiddleware, Store
from bounce_middleware.celery_tasks import CeleryHandoff
from bounce_middleware.testing import auth_headers, postmark_bounce, sendgrid_event

from . import celery_app
from .celery_harness import Setup, running, start_beat, start_worker, wait_until
from .redis_server import RedisServer, free_port

RECORD, FLAKY = celery_app.HANDLERS
HEADERS = auth_headers(celery_app.USER, celery_app.PASSWORD)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


def make_setup(
    name: str, tmp_path: Path, redis: RedisServer, request: pytest.FixtureRequest, **options: Any
) -> Setup:
    """Store and ledger of the case ``name`` on fresh databases."""
    if name.endswith("postgres"):
        server = request.getfixturevalue("postgres")
        database = server.create_database("celery")
        url = server.url(database, driver="postgresql+psycopg")
        store = "sqlalchemy+" + url if name.startswith("sqlalchemy") else server.url(database)
        ledger = url
    elif name == "sqlalchemy-sqlite":
        ledger = f"sqlite:///{tmp_path / 'bounces.sqlite3'}"
        store = "sqlalchemy+" + ledger
    else:
        store = f"sqlite:///{tmp_path / 'bounces.sqlite3'}"
        ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    celery_app.create_ledger(ledger)
    return Setup(redis.url, store, ledger, tmp_path, {"retry_jitter": False, **options})


class Web:
    """The webhook's side: the middleware handing off to the test's broker."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.store: Store = celery_app.open_test_store(setup.store)
        self.middleware: BounceMiddleware = celery_app.make_middleware(
            celery_app.make_celery(setup.broker), self.store, **setup.options
        )
        self.app = TestApp(self.middleware)

    @property
    def handoff(self) -> CeleryHandoff:
        handoff = self.middleware.receiver.handoff
        assert isinstance(handoff, CeleryHandoff)
        return handoff

    def post(self, payload: Any, path: str = celery_app.POSTMARK_PATH) -> tuple[int, str, float]:
        started = time.perf_counter()
        response = self.app.post(path, json.dumps(payload), headers=HEADERS, expect_errors=True)
        return response.status_int, response.text.strip(), time.perf_counter() - started

    def unfinished(self) -> set[str]:
        return {r.key for r in self.store.records(unfinished=True, limit=None)}

    def completed(self, key: str) -> frozenset[str]:
        return next(r.completed for r in self.store.records(limit=None) if r.key == key)

    def effects(self) -> Counter[tuple[str, str]]:
        return Counter(celery_app.effects(self.setup.ledger))


STORES = ["sqlite", "postgres", "sqlalchemy-sqlite", "sqlalchemy-postgres"]


@pytest.mark.parametrize("name", STORES)
def test_handed_off_events_are_run_by_workers_once_per_handler(
    name: str, tmp_path: Path, redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    setup = make_setup(name, tmp_path, redis, request, slow_seconds=1.5, retry_backoff=0.2)
    web = Web(setup)
    keys = [f"postmark:{9000 + n}" for n in range(30)]
    batch = [sendgrid_event("hard", email=f"batch{n}@example.com") for n in range(20)]
    # Every event posted twice (a provider's redelivery), a slow one among them: with
    # no worker running yet, each answer is 200 at once, and the event is recorded.
    for _ in range(2):
        for n, key in enumerate(keys):
            email = "slow@example.com" if n == 0 else f"user{n}@example.com"
            status, reason, _ = web.post(postmark_bounce(ID=9000 + n, Email=email))
            assert (status, reason) == (200, "accepted; queued for the handlers"), key
        status, reason, _ = web.post(batch, celery_app.SENDGRID_PATH)
        assert (status, reason) == (200, "20 events accepted; 20 queued")
    assert len(web.unfinished()) == 50  # what `bounce-middleware list --unfinished` shows
    assert redis.queued("bounce-tests") == 100  # a redelivery of a queued event: queued again

    first, second = start_worker(setup), start_worker(setup)
    with running(first, second):
        wait_until(lambda: not web.unfinished(), "every event finished", first, second)
        wait_until(lambda: redis.queued("bounce-tests") == 0, "the queue drained", first, second)
    all_keys = {r.key for r in web.store.records(limit=None)}
    assert len(all_keys) == 50
    assert web.effects() == {
        (key, handler): 1 for key in all_keys for handler in ("record", "flaky")
    }
    # A redelivery of a finished event runs and queues nothing.
    assert web.post(postmark_bounce(ID=9001, Email="user1@example.com"))[:2] == (
        200,
        "already processed",
    )
    assert redis.queued("bounce-tests") == 0


@pytest.mark.parametrize("name", ["sqlite", "postgres"])
def test_a_failing_handler_is_retried_with_backoff_until_it_succeeds(
    name: str, tmp_path: Path, redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    setup = make_setup(name, tmp_path, redis, request, retry_backoff=0.4, flaky_failures=2)
    web = Web(setup)
    assert web.post(postmark_bounce(ID=1, Email="flaky@example.com"))[0] == 200
    worker = start_worker(setup)
    with running(worker):
        wait_until(lambda: not web.unfinished(), "the event finished", worker)
    tries = celery_app.attempts(setup.ledger, "postmark:1")
    assert len(tries) == 3
    gaps = [later - earlier for earlier, later in zip(tries, tries[1:], strict=False)]
    # 0.4 s, then twice that: exponential, not a tight loop.
    assert gaps[0] >= 0.4
    assert gaps[1] >= 0.8
    assert "retry 1 of 8 in 0.4 s" in worker.output()
    assert "retry 2 of 8 in 0.8 s" in worker.output()
    # The handler that succeeded the first time ran once; the flaky one applied once.
    assert web.effects() == {("postmark:1", "record"): 1, ("postmark:1", "flaky"): 1}


def test_after_the_last_retry_the_sweeper_queues_the_event_again(
    tmp_path: Path, redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    setup = make_setup(
        "sqlite", tmp_path, redis, request, retry_backoff=0.2, max_retries=1, flaky_failures=3
    )
    web = Web(setup)
    assert web.post(postmark_bounce(ID=2, Email="flaky@example.com"))[0] == 200
    worker = start_worker(setup)
    with running(worker):
        worker.wait_for("still failed after 1 retries; left for the sweeper")
        assert web.unfinished() == {"postmark:2"}
        assert web.completed("postmark:2") == {RECORD}
        # What the beat task and the CLI run: every unfinished event queued again.
        assert web.handoff.sweep(timedelta(0)) == 1
        wait_until(lambda: not web.unfinished(), "the swept event finished", worker)
    assert len(celery_app.attempts(setup.ledger, "postmark:2")) == 4
    assert web.effects() == {("postmark:2", "record"): 1, ("postmark:2", "flaky"): 1}


@pytest.mark.parametrize("name", ["sqlite", "postgres"])
def test_broker_down_at_enqueue_answers_200_and_beat_sweeps_after_it_returns(
    name: str, tmp_path: Path, redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    setup = make_setup(name, tmp_path, redis, request, sweep_every=1.0, sweep_older_than=1.0)
    web = Web(setup)
    assert web.post(postmark_bounce(ID=10, Email="before@example.com"))[0] == 200
    redis.stop()
    for n in (11, 12):
        status, reason, _ = web.post(postmark_bounce(ID=n, Email=f"during{n}@example.com"))
        assert (status, reason) == (200, "accepted; recorded, to be queued later")
    batch = [sendgrid_event("hard", email=f"batch{n}@example.com") for n in range(5)]
    assert web.post(batch, celery_app.SENDGRID_PATH)[:2] == (200, "5 events accepted; 5 kept")
    assert len(web.unfinished()) == 8
    redis.start()  # empty: the message queued before the outage went with the broker
    assert redis.queued("bounce-tests") == 0
    worker, beat = start_worker(setup), start_beat(setup)
    with running(worker, beat):
        wait_until(lambda: not web.unfinished(), "the sweeper's events finished", worker, beat)
    assert "Sending due task bounce_middleware.sweep" in beat.output()
    effects = web.effects()
    assert len(effects) == 16
    assert set(effects.values()) == {1}


def test_a_store_that_cannot_record_answers_503(redis: RedisServer) -> None:
    # A PostgreSQL server nobody listens for: the event cannot be kept, so the
    # provider must retry; nothing is queued.
    store = celery_app.open_test_store(
        f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere?timeout=1"
    )
    middleware = celery_app.make_middleware(celery_app.make_celery(redis.url), store)
    response = TestApp(middleware).post(
        celery_app.POSTMARK_PATH,
        json.dumps(postmark_bounce(ID=3)),
        headers=HEADERS,
        expect_errors=True,
    )
    assert response.status_int == 503
    assert response.headers["Retry-After"] == "1"
    assert redis.queued("bounce-tests") == 0


@pytest.mark.parametrize("name", ["sqlite", "sqlalchemy-sqlite", "sqlalchemy-postgres"])
def test_a_worker_killed_mid_task_is_taken_over_and_nothing_runs_twice(
    name: str, tmp_path: Path, redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    setup = make_setup(name, tmp_path, redis, request, lease_seconds=4.0, retry_backoff=0.3)
    web = Web(setup)
    assert web.post(postmark_bounce(ID=4, Email="crash@example.com"))[0] == 200
    doomed = start_worker(setup)
    with running(doomed):
        # flaky kills its worker after record's effect and completion were committed.
        wait_until(lambda: not doomed.alive(), "the worker's death", doomed)
    assert web.unfinished() == {"postmark:4"}
    assert web.completed("postmark:4") == {RECORD}
    # The message died with the worker (acknowledged late, it waits in Redis for the
    # visibility timeout, an hour): the sweeper queues the event again at once, while
    # the dead worker's lease still holds it.
    assert web.handoff.sweep(timedelta(0)) == 1
    heir = start_worker(setup)
    with running(heir):
        wait_until(lambda: not web.unfinished(), "the event taken over", heir)
    assert "queued bounce postmark:4: busy; retry 1 of 8" in heir.output()
    assert len(celery_app.attempts(setup.ledger, "postmark:4")) == 2
    assert web.effects() == {("postmark:4", "record"): 1, ("postmark:4", "flaky"): 1}
