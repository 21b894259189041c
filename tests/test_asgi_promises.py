"""The store's promises against a real ASGI server: uvicorn workers sharing one SQLite file.

``tests/test_promises.py``'s tests, imported here, run unchanged against
:func:`tests.promise_asgi.serve` (this module's ``server`` fixture): a
duplicate storm applied once, a load of distinct events, a failing handler
completed by the redelivery alone, a worker killed mid-event taken over after
its lease, a locked store answered 503. The read-only store test starts its
own servers, so it is written again here with the ASGI ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bounce_middleware.sqlite_store import SQLiteStore
from tests.promise_app import Server, post
from tests.promise_asgi import serve
from tests.test_promises import (
    LEASE_SECONDS,
    body,
    test_a_duplicate_storm_is_applied_exactly_once,
    test_a_handler_failing_once_is_completed_by_the_redelivery_alone,
    test_a_load_of_distinct_events_is_recorded_and_applied_once_each,
    test_a_locked_store_answers_503_and_the_redelivery_succeeds,
    test_a_worker_killed_mid_event_is_taken_over_after_its_lease,
)

__all__ = [
    "test_a_duplicate_storm_is_applied_exactly_once",
    "test_a_handler_failing_once_is_completed_by_the_redelivery_alone",
    "test_a_load_of_distinct_events_is_recorded_and_applied_once_each",
    "test_a_locked_store_answers_503_and_the_redelivery_succeeds",
    "test_a_worker_killed_mid_event_is_taken_over_after_its_lease",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("asgi-promises"), lease_seconds=LEASE_SECONDS) as running:
        yield running


def test_a_read_only_store_answers_503_and_after_repair_the_redelivery_succeeds(
    tmp_path: Path,
) -> None:
    event = body(email="read-only@example.com")
    key = f"postmark:{json.loads(event)['ID']}"
    SQLiteStore(tmp_path / "bounces.sqlite3").check()
    with serve(tmp_path, workers=2, store_options="mode=ro") as broken:
        answer = post(broken.url, event)
        assert (answer.status, answer.retry_after) == (503, "1")
        assert broken.applications()[key, "apply"] == 0
    with serve(tmp_path, workers=2) as repaired:
        assert post(repaired.url, event).status == 200
        applied = repaired.applications()
    assert (applied[key, "apply"], applied[key, "notify"], applied[key, "flaky"]) == (1, 1, 1)
