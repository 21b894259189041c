"""The store's promises on PostgreSQL: gunicorn workers sharing one PostgresStore.

``tests/test_promises.py``'s scenarios, against gunicorn serving
``tests/promise_app.py`` (three worker processes of four threads each,
``--preload``: the master opens the store before forking) on the session's
PostgreSQL server; the handlers count what they really did in a ledger file.
The last test stops the server itself in the middle of a load.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bounce_middleware import open_store
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.store import Record
from bounce_middleware.testing import postmark_bounce
from tests.postgres import PostgresServer
from tests.postgres_store_server import private_server, restart, serve, stop
from tests.promise_app import (
    HANDLERS,
    Answer,
    Server,
    post,
    post_all,
    post_until_accepted,
)

LOAD_EVENTS = 1000
LEASE_SECONDS = 2.0


@pytest.fixture(scope="module")
def store_url(postgres: PostgresServer) -> str:
    # timeout=1: a claim waits at most a second for a row another transaction holds.
    return postgres.url(postgres.create_database("promises")) + "?timeout=1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    # A short lease, so that a crashed worker's claim is taken over within the test.
    with serve(
        tmp_path_factory.mktemp("pg-promises"), store_url, lease_seconds=LEASE_SECONDS
    ) as running:
        yield running


def body(**fields: Any) -> bytes:
    return json.dumps(postmark_bounce(**fields)).encode()


def key_of(event: bytes) -> str:
    return f"postmark:{json.loads(event)['ID']}"


def records(url: str) -> dict[str, Record]:
    store = open_store(url)
    try:
        return {r.key: r for r in store.records(limit=None)}
    finally:
        assert isinstance(store, PostgresStore)
        store.close()


def applied_to(server: Server, key: str) -> tuple[int, int, int]:
    applied = server.applications()
    return applied[key, "apply"], applied[key, "notify"], applied[key, "flaky"]


def test_a_duplicate_storm_is_applied_exactly_once(server: Server, store_url: str) -> None:
    event = body(email="slow-storm@example.com")
    answers = post_all(server.url, [event] * 50, concurrency=50)
    codes = [a.status for a in answers]
    assert all(code == 200 or 500 <= code < 600 for code in codes), codes
    assert post_until_accepted(server.url, event)[-1].status == 200
    assert applied_to(server, key_of(event)) == (1, 1, 1)
    assert records(store_url)[key_of(event)].attempts == 1


def test_a_load_of_distinct_events_is_recorded_and_applied_once_each(
    server: Server, store_url: str
) -> None:
    events = [body(email=f"user{n}@example.com") for n in range(LOAD_EVENTS)]
    answers = post_all(server.url, events, concurrency=16)
    assert not [a.status for a in answers if 400 <= a.status < 500]
    for event, answer in zip(events, answers, strict=True):
        if answer.status != 200:
            assert post_until_accepted(server.url, event)[-1].status == 200
    stored = records(store_url)
    keys = [key_of(e) for e in events]
    assert all(stored[k].finished and stored[k].completed == set(HANDLERS) for k in keys)
    applied = server.applications()
    assert {applied[k, h] for k in keys for h in ("apply", "notify", "flaky")} == {1}


def test_a_handler_failing_once_is_completed_by_the_redelivery_alone(server: Server) -> None:
    event = body(email="flaky@example.com")
    assert post(server.url, event).status == 500
    assert applied_to(server, key_of(event)) == (1, 1, 0)
    assert post(server.url, event).status == 200
    assert post(server.url, event).status == 200
    assert applied_to(server, key_of(event)) == (1, 1, 1)


def test_a_worker_killed_mid_event_is_taken_over_after_its_lease(
    server: Server, store_url: str
) -> None:
    event = body(email="crash@example.com")
    assert post(server.url, event).status == 0
    answers = post_until_accepted(server.url, event, attempts=400)
    assert {a.status for a in answers[:-1]} <= {503}
    assert answers[-1].status == 200
    assert applied_to(server, key_of(event)) == (1, 1, 1)
    record = records(store_url)[key_of(event)]
    assert (record.finished, record.attempts) == (True, 2)


def test_a_row_locked_past_the_timeout_answers_503_and_the_redelivery_succeeds(
    server: Server, store_url: str
) -> None:
    event = body(email="locked@example.com")
    assert post(server.url, event).status == 200
    again = body(email="locked-again@example.com")
    # An operator's transaction holds every row longer than the store waits (timeout=1).
    with psycopg.connect(store_url.partition("?")[0]) as holder:
        holder.execute("LOCK TABLE bounce_event IN EXCLUSIVE MODE")
        answer = post(server.url, again)
        assert (answer.status, answer.retry_after) == (503, "1")
        holder.rollback()
    assert applied_to(server, key_of(again)) == (0, 0, 0)
    assert post(server.url, again).status == 200
    assert applied_to(server, key_of(again)) == (1, 1, 1)


def test_the_server_stopped_mid_load_loses_nothing_and_applies_nothing_twice_that_was_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with private_server(monkeypatch) as database:
        url = database.url(database.create_database("outage"))
        with serve(tmp_path, url, workers=2, threads=4, lease_seconds=1.0) as app:
            events = [body(email=f"outage{n}@example.com") for n in range(300)]
            first: list[Answer] = []

            def load() -> None:
                first.extend(post_all(app.url, events, concurrency=8))

            sender = threading.Thread(target=load)
            sender.start()
            time.sleep(0.3)
            stop(database)
            time.sleep(1.0)
            restart(database)
            sender.join(timeout=120)
            statuses = {a.status for a in first}
            # Some were refused while it was down, none with a 4xx (the provider would drop it).
            assert 503 in statuses and statuses <= {200, 500, 503}, statuses
            for event, answer in zip(events, first, strict=True):
                if answer.status != 200:
                    assert post_until_accepted(app.url, event, attempts=200)[-1].status == 200
            stored = records(url)
            applied = app.applications()
        keys = [key_of(e) for e in events]
        assert all(stored[k].finished and stored[k].completed == set(HANDLERS) for k in keys)
        for event, answer in zip(events, first, strict=True):
            counts = {applied[key_of(event), h] for h in ("apply", "notify", "flaky")}
            # Answered 200 at once: applied exactly once. Otherwise at least once (a
            # handler whose completion the stopped server could not keep ran again).
            assert (counts == {1}) if answer.status == 200 else (min(counts) >= 1)
