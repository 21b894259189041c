"""The middleware over every shipped store: recorded before handlers, redeliveries, failures."""

from __future__ import annotations

import json

from bounce_middleware import Bounce
from bounce_middleware.testing import postmark_bounce
from tests.store_apps import LEASE, Audit, Flaky, make_app, make_bounce, post
from tests.store_cases import StoreCase


def test_the_event_is_recorded_before_any_handler_runs(store_case: StoreCase) -> None:
    store = store_case.store
    seen: list[tuple[str, bool]] = []

    def look(bounce: Bounce) -> None:
        seen.extend((r.key, r.finished) for r in store.records())

    payload = postmark_bounce(ID=7)
    post(make_app(store, look), payload, 200)
    assert seen == [("postmark:7", False)]
    [record] = store.records()
    assert record.finished
    assert json.loads(record.body) == payload


def test_a_completed_event_redelivered_runs_nothing_and_answers_200(store_case: StoreCase) -> None:
    audit = Audit()
    app = make_app(store_case.store, audit)
    payload = postmark_bounce()
    post(app, payload, 200)
    response = post(app, payload, 200)
    assert "already processed" in response.text
    assert audit.calls == [f"postmark:{payload['ID']}"]


def test_after_a_failure_the_redelivery_runs_only_what_did_not_complete(
    store_case: StoreCase,
) -> None:
    store = store_case.store
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
    assert record.completed == {"tests.store_apps.Audit", "tests.store_apps.Flaky"}


def test_a_delivery_overlapping_a_running_one_answers_503_and_runs_nothing(
    store_case: StoreCase,
) -> None:
    store = store_case.store
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


def test_a_refused_authenticated_request_is_kept_as_a_rejected_record(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    audit = Audit()
    app = make_app(store, audit)
    refused = {"RecordType": "Bounce", "ID": "not a number", "Type": "HardBounce"}
    response = post(app, refused, 400)
    assert audit.calls == []
    [record] = store.records(rejected=True)
    assert record.body == json.dumps(refused).encode()
    assert record.reason and record.reason in response.text
    assert store.records() == []
