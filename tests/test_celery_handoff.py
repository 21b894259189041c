"""The hand-off in one process: what the webhook records and queues (real Redis), and the
deliver and sweep tasks run by Celery's own ``Task.apply`` against the real store."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from bounce_middleware import BounceMiddleware, ConfigurationError, MemoryStore, SQLiteStore
from bounce_middleware.celery_tasks import (
    DELIVER_TASK,
    SWEEP_TASK,
    CeleryHandoff,
    receiver_for,
    sweep_schedule,
)
from bounce_middleware.handoff import find_record, sweep
from bounce_middleware.providers import Postmark, SendGrid
from bounce_middleware.testing import auth_headers, postmark_bounce, sendgrid_event

from . import celery_app
from .redis_server import RedisServer

HEADERS = auth_headers(celery_app.USER, celery_app.PASSWORD)
QUEUE = "bounce-tests"


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


def remember(seen: list[str]) -> Any:
    def handler(bounce: Any) -> None:
        seen.append(bounce.key)

    return handler


def build(
    redis: RedisServer, store: Any, handlers: list[Any], **options: Any
) -> tuple[BounceMiddleware, TestApp]:
    middleware = BounceMiddleware(
        celery_app.root_app,
        routes={
            celery_app.POSTMARK_PATH: Postmark(credentials=celery_app.CREDENTIALS),
            celery_app.SENDGRID_PATH: SendGrid(credentials=celery_app.CREDENTIALS),
        },
        handlers=handlers,
        store=store,
        handoff=CeleryHandoff(celery_app.make_celery(redis.url), **options),
    )
    return middleware, TestApp(middleware)


def post(app: TestApp, payload: Any, path: str = celery_app.POSTMARK_PATH) -> tuple[int, str]:
    response = app.post(path, json.dumps(payload), headers=HEADERS, expect_errors=True)
    return response.status_int, response.text.strip()


def run_task(middleware: BounceMiddleware, name: str, *args: Any) -> Any:
    handoff = middleware.receiver.handoff
    assert isinstance(handoff, CeleryHandoff)
    return handoff.app.tasks[name].apply(args=args).get()


def test_the_webhook_records_queues_and_the_task_runs_the_handlers(
    redis: RedisServer, tmp_path: Path
) -> None:
    seen: list[str] = []
    store = SQLiteStore(tmp_path / "b.sqlite3")
    middleware, app = build(redis, store, [remember(seen)])
    assert post(app, postmark_bounce(ID=1)) == (200, "accepted; queued for the handlers")
    assert seen == []  # nothing ran in the request
    [record] = store.records(unfinished=True)
    assert (record.key, record.completed) == ("postmark:1", frozenset())
    assert redis.queued(QUEUE) == 1
    assert run_task(middleware, DELIVER_TASK, "postmark:1") == "done"
    assert seen == ["postmark:1"]
    assert store.records(unfinished=True) == []
    # A second message for it (the sweeper's, a duplicate) runs nothing.
    assert run_task(middleware, DELIVER_TASK, "postmark:1") == "done"
    assert seen == ["postmark:1"]
    assert run_task(middleware, DELIVER_TASK, "postmark:unknown") == "done"


def test_a_batch_is_claimed_once_and_each_new_event_queued_once(
    redis: RedisServer, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "b.sqlite3")
    _, app = build(redis, store, [remember([])])
    event = sendgrid_event("hard", email="a@example.com")
    batch = [event, event, sendgrid_event("hard", email="b@example.com")]
    assert post(app, batch, celery_app.SENDGRID_PATH) == (200, "2 events accepted; 2 queued")
    assert redis.queued(QUEUE) == 2
    assert len(store.records(unfinished=True)) == 2


def test_an_event_no_handler_wants_is_finished_without_a_message(
    redis: RedisServer, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "b.sqlite3")
    middleware, app = build(redis, store, [])
    middleware.add_handler(remember([]), kinds=["complaint"])
    assert post(app, postmark_bounce(ID=2))[0] == 200
    assert redis.queued(QUEUE) == 0
    [record] = store.records()
    assert record.finished
    # A redelivery of a finished event is answered as always, and not queued.
    assert post(app, postmark_bounce(ID=2)) == (200, "already processed")
    assert redis.queued(QUEUE) == 0


def test_a_stored_body_no_route_parses_is_skipped_and_left_unfinished(
    redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "b.sqlite3")
    _, app = build(redis, store, [remember([])])
    assert post(app, postmark_bounce(ID=3))[0] == 200
    # The worker's application no longer has a Postmark route.
    seen: list[str] = []
    worker = BounceMiddleware(
        celery_app.root_app,
        routes={celery_app.SENDGRID_PATH: SendGrid(credentials=celery_app.CREDENTIALS)},
        handlers=[remember(seen)],
        store=store,
        handoff=CeleryHandoff(celery_app.make_celery(redis.url)),
    )
    with caplog.at_level(logging.ERROR, "bounce_middleware"):
        assert run_task(worker, DELIVER_TASK, "postmark:3") == "skipped"
    assert "queued bounce postmark:3 cannot run: its provider 'postmark' has no route" in (
        caplog.text
    )
    assert seen == []
    assert [r.key for r in store.records(unfinished=True)] == ["postmark:3"]


def test_a_handoff_needs_a_store_and_an_enqueue(redis: RedisServer) -> None:
    celery = celery_app.make_celery(redis.url)
    with pytest.raises(ConfigurationError, match="handoff= needs a store"):
        BounceMiddleware(
            celery_app.root_app,
            routes={"/p": Postmark(credentials=celery_app.CREDENTIALS)},
            handoff=CeleryHandoff(celery),
        )
    with pytest.raises(ConfigurationError, match="no enqueue"):
        BounceMiddleware(
            celery_app.root_app,
            routes={"/p": Postmark(credentials=celery_app.CREDENTIALS)},
            store=MemoryStore(),
            handoff=object(),  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigurationError, match="needs a Celery app"):
        CeleryHandoff("myproject.celery:app")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="retry_backoff must be a positive"):
        CeleryHandoff(celery, retry_backoff=0)


def test_the_broker_down_is_logged_without_its_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer()  # never started: nobody listens on its port
    celery = celery_app.make_celery(f"redis://:broker-s3cret@127.0.0.1:{redis.port}/0")
    store = SQLiteStore(tmp_path / "b.sqlite3")
    middleware = BounceMiddleware(
        celery_app.root_app,
        routes={celery_app.POSTMARK_PATH: Postmark(credentials=celery_app.CREDENTIALS)},
        handlers=[remember([])],
        store=store,
        handoff=CeleryHandoff(celery),
    )
    with caplog.at_level(logging.INFO, "bounce_middleware"):
        status, reason = post(TestApp(middleware), postmark_bounce(ID=5, Email="who@example.com"))
    assert (status, reason) == (200, "accepted; recorded, to be queued later")
    assert "queue did not take 1 key(s) (OperationalError); the sweeper queues them" in caplog.text
    assert "broker-s3cret" not in caplog.text
    assert str(redis.port) not in caplog.text
    assert "who@example.com" not in caplog.text
    redis.close()


def test_the_sweep_task_queues_the_old_unfinished_events(
    redis: RedisServer, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "b.sqlite3")
    middleware, app = build(redis, store, [remember([])], sweep_older_than=3600)
    for n in (6, 7):
        assert post(app, postmark_bounce(ID=n))[0] == 200
    assert redis.queued(QUEUE) == 2
    # Received seconds ago: younger than the handoff's hour, left alone...
    assert run_task(middleware, SWEEP_TASK) == 0
    # ...older than the beat entry's own threshold, queued again, oldest first.
    assert run_task(middleware, SWEEP_TASK, 0.0) == 2
    assert redis.queued(QUEUE) == 4
    queued: list[str] = []
    later = datetime.now(UTC) + timedelta(hours=2)
    assert sweep(store, queued.extend, timedelta(hours=1), now=later) == 2
    assert queued == ["postmark:6", "postmark:7"]
    assert run_task(middleware, DELIVER_TASK, "postmark:6") == "done"
    assert sweep(store, queued.extend, timedelta(hours=1), now=later) == 1


def test_find_record_reads_unfinished_events_by_key(tmp_path: Path, redis: RedisServer) -> None:
    store = SQLiteStore(tmp_path / "b.sqlite3")
    _, app = build(redis, store, [remember([])])
    post(app, postmark_bounce(ID=8))
    record = find_record(store, "postmark:8")
    assert record is not None and not record.finished
    assert find_record(store, "postmark:9") is None


def test_the_beat_entry_and_the_backoff() -> None:
    assert sweep_schedule(60.0, 120.0) == {
        SWEEP_TASK: {"task": SWEEP_TASK, "schedule": 60.0, "kwargs": {"older_than": 120.0}}
    }
    handoff = CeleryHandoff(celery_app.settings_celery, retry_backoff=2, retry_backoff_max=30)
    for retries, full in [(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0), (4, 30.0), (500, 30.0)]:
        for _ in range(20):
            assert full / 2 <= handoff.countdown(retries) <= full
    exact = CeleryHandoff(celery_app.settings_celery, retry_backoff=2, retry_jitter=False)
    assert [exact.countdown(n) for n in range(4)] == [2.0, 4.0, 8.0, 16.0]


def test_a_worker_without_a_middleware_says_how_to_name_one() -> None:
    celery = celery_app.make_celery("redis://127.0.0.1:9/0")
    with pytest.raises(ConfigurationError, match="bounce_middleware_app = 'module:attr'"):
        receiver_for(celery)
    celery.conf.bounce_middleware_app = "tests.celery_app:nothing_here"
    with pytest.raises(ConfigurationError, match="Celery setting bounce_middleware_app: --app"):
        receiver_for(celery)


def test_a_worker_loads_the_application_its_setting_names(
    redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a Pyramid or plain-WSGI worker does: the celery module names the app.
    store_url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    celery_app.create_ledger(ledger)
    monkeypatch.setenv("BOUNCE_CELERY_LEDGER", ledger)
    monkeypatch.setenv("BOUNCE_CELERY_STORE", store_url)
    monkeypatch.setattr(celery_app, "settings_celery", celery_app.make_celery(redis.url))
    _, app = build(
        redis, celery_app.open_test_store(store_url), [celery_app.record, celery_app.flaky]
    )
    assert post(app, postmark_bounce(ID=10))[0] == 200
    worker_celery = celery_app.make_celery(redis.url)
    worker_celery.conf.bounce_middleware_app = "tests.celery_app:application_factory"
    receiver = receiver_for(worker_celery)
    assert receiver_for(worker_celery) is receiver  # loaded once
    assert worker_celery.tasks[DELIVER_TASK].apply(args=("postmark:10",)).get() == "done"
    assert celery_app.effects(ledger) == [("postmark:10", "record"), ("postmark:10", "flaky")]
