"""The store's promises against a real server: gunicorn workers sharing one SQLite file.

Every test talks HTTP to a gunicorn started by :func:`tests.promise_app.serve`
(three worker processes with four threads each, ``--preload``) and counts what
the handlers really did in the ledger file they append to.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.testing import postmark_bounce
from tests.promise_app import HANDLERS, Server, post, post_all, post_until_accepted, serve

LOAD_EVENTS = 2000
LEASE_SECONDS = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A short lease, so that a crashed worker's claim is taken over within the test.
    with serve(tmp_path_factory.mktemp("promises"), lease_seconds=LEASE_SECONDS) as running:
        yield running


def body(**fields: Any) -> bytes:
    return json.dumps(postmark_bounce(**fields)).encode()


def records_of(server: Server, key: str) -> list[str]:
    store = SQLiteStore(server.store_path, read_only=True)
    try:
        return [r.key for r in store.records(limit=None) if r.key == key]
    finally:
        store.close()


def test_a_duplicate_storm_is_applied_exactly_once(server: Server) -> None:
    event = body(email="slow-storm@example.com")
    key = f"postmark:{json.loads(event)['ID']}"
    answers = post_all(server.url, [event] * 50, concurrency=50)
    codes = [a.status for a in answers]
    assert all(code == 200 or 500 <= code < 600 for code in codes), codes
    # The provider keeps retrying until it gets a 200.
    assert post_until_accepted(server.url, event)[-1].status == 200
    applied = server.applications()
    assert {h: applied[key, h] for h in ("apply", "notify", "flaky")} == {
        "apply": 1,
        "notify": 1,
        "flaky": 1,
    }
    assert records_of(server, key) == [key]


def test_a_load_of_distinct_events_is_recorded_and_applied_once_each(server: Server) -> None:
    events = [body(email=f"user{n}@example.com") for n in range(LOAD_EVENTS)]
    keys = [f"postmark:{json.loads(e)['ID']}" for e in events]
    answers = post_all(server.url, events, concurrency=16)
    assert not [a.status for a in answers if 400 <= a.status < 500]
    # Anything not accepted at once (a lock wait past the timeout) is redelivered.
    for event, answer in zip(events, answers, strict=True):
        if answer.status != 200:
            assert post_until_accepted(server.url, event)[-1].status == 200
    store = SQLiteStore(server.store_path, read_only=True)
    try:
        records = {r.key: r for r in store.records(limit=None)}
    finally:
        store.close()
    assert set(keys) <= set(records)
    assert all(records[k].finished and records[k].completed == set(HANDLERS) for k in keys)
    applied = server.applications()
    counts = {applied[k, h] for k in keys for h in ("apply", "notify", "flaky")}
    assert counts == {1}


def test_a_handler_failing_once_is_completed_by_the_redelivery_alone(server: Server) -> None:
    event = body(email="flaky@example.com")
    key = f"postmark:{json.loads(event)['ID']}"
    assert post(server.url, event).status == 500
    applied = server.applications()
    assert (applied[key, "apply"], applied[key, "notify"], applied[key, "flaky"]) == (1, 1, 0)
    assert post(server.url, event).status == 200
    assert post(server.url, event).status == 200
    applied = server.applications()
    assert (applied[key, "apply"], applied[key, "notify"], applied[key, "flaky"]) == (1, 1, 1)


def test_a_worker_killed_mid_event_is_taken_over_after_its_lease(server: Server) -> None:
    event = body(email="crash@example.com")
    key = f"postmark:{json.loads(event)['ID']}"
    # The worker dies between handlers: the connection drops, no answer at all.
    assert post(server.url, event).status == 0
    # Redeliveries wait (503) while the dead worker's lease runs, then one takes over.
    answers = post_until_accepted(server.url, event, attempts=400)
    assert {a.status for a in answers[:-1]} <= {503}
    assert answers[-1].status == 200
    applied = server.applications()
    assert (applied[key, "apply"], applied[key, "notify"], applied[key, "flaky"]) == (1, 1, 1)
    store = SQLiteStore(server.store_path, read_only=True)
    try:
        [record] = [r for r in store.records(limit=None) if r.key == key]
    finally:
        store.close()
    assert record.finished
    assert record.attempts == 2


def test_a_locked_store_answers_503_and_the_redelivery_succeeds(server: Server) -> None:
    event = body(email="locked@example.com")
    key = f"postmark:{json.loads(event)['ID']}"
    # Someone holds the write lock longer than the store waits (timeout=1 in the URL).
    holder = sqlite3.connect(server.store_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        answer = post(server.url, event)
        assert answer.status == 503
        assert answer.retry_after == "1"
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert server.applications()[key, "apply"] == 0
    assert post(server.url, event).status == 200
    applied = server.applications()
    assert (applied[key, "apply"], applied[key, "notify"], applied[key, "flaky"]) == (1, 1, 1)


def test_a_read_only_store_answers_503_and_after_repair_the_redelivery_succeeds(
    tmp_path: Path,
) -> None:
    event = body(email="read-only@example.com")
    key = f"postmark:{json.loads(event)['ID']}"
    SQLiteStore(tmp_path / "bounces.sqlite3").check()
    # Deployed with a store it may not write: every delivery is refused with 503.
    with serve(tmp_path, workers=2, threads=2, store_options="mode=ro") as broken:
        answer = post(broken.url, event)
        assert answer.status == 503
        assert answer.retry_after == "1"
        assert broken.applications()[key, "apply"] == 0
    # Repaired and restarted on the same file: the provider's retry goes through.
    with serve(tmp_path, workers=2, threads=2) as repaired:
        assert post(repaired.url, event).status == 200
        applied = repaired.applications()
    assert (applied[key, "apply"], applied[key, "notify"], applied[key, "flaky"]) == (1, 1, 1)
