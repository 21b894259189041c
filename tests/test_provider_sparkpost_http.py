"""SparkPost requests through the real middleware and a SQLite store: authentication before
the body, the creation ping, refused bodies kept, retried batches, handler failures replayed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webob import Request
from webtest import TestApp, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, SQLiteStore
from bounce_middleware.cli.replay import replay_event, replay_rejected
from bounce_middleware.providers.sparkpost import SparkPost, parse_sparkpost
from bounce_middleware.samples.sparkpost import (
    PING,
    SAMPLE_KINDS,
    sample_request,
    sparkpost_batch,
    sparkpost_event,
    sparkpost_headers,
    sparkpost_request,
)
from tests.store_apps import Audit, downstream

PATH = "/hooks/sparkpost"
TOKEN = "sp-http-token-2b7e151628aed2a6"
CREDENTIALS = "sparkpost:sp-http-basic-password-9f"
ACKNOWLEDGED_SAMPLES = ("delivery", "open")


class FailsFor(Audit):
    """Fails for one address until ``fixed`` is set, like a handler whose row is locked."""

    def __init__(self, email: str) -> None:
        super().__init__()
        self.email = email
        self.fixed = False

    def __call__(self, bounce: Bounce) -> None:
        super().__call__(bounce)
        if bounce.email == self.email and not self.fixed:
            raise RuntimeError("that user's row is locked")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    made = SQLiteStore(tmp_path / "b.db")
    yield made
    made.close()


def middleware(store: SQLiteStore, *handlers: Any) -> BounceMiddleware:
    provider = SparkPost(credentials=[CREDENTIALS], tokens=[TOKEN])
    return BounceMiddleware(downstream, routes={PATH: provider}, handlers=handlers, store=store)


def deliver(app: TestApp[Any], headers: dict[str, str], body: bytes, status: int) -> TestResponse:
    return app.request(PATH, status=status, method="POST", headers=headers, body=body)


def keys(events: list[dict[str, Any]]) -> list[str]:
    """Each event's key: its event_id, with the digest of its type, time and recipient."""
    found = []
    for event in events:
        [bounce] = parse_sparkpost(json.dumps([event]).encode()).events
        assert bounce.key.startswith(f"sparkpost:{next(iter(event['msys'].values()))['event_id']}:")
        found.append(bounce.key)
    return found


class CountingInput(io.BytesIO):
    """``wsgi.input`` that counts the bytes the application read."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def post_counting(app: BounceMiddleware, headers: dict[str, str], body: bytes) -> tuple[int, int]:
    """POST through WSGI; the status and how many body bytes the middleware read."""
    stream = CountingInput(body)
    request = Request.blank(PATH, method="POST", headers=headers)
    request.environ["wsgi.input"] = stream
    request.environ["CONTENT_LENGTH"] = str(len(body))
    response = request.get_response(app)
    if response.status_int == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    return response.status_int, stream.consumed


WRONG = {
    "none": {},
    "wrong bearer": sparkpost_headers(token="sp-http-token-0000000000000000"),
    "wrong legacy token": sparkpost_headers(token="not-it-0000000000", legacy=True),
    "wrong password": sparkpost_headers(credentials="sparkpost:wrong-password-0000"),
    "token as Basic": sparkpost_headers(credentials=f"sparkpost:{TOKEN}"),
    "password as bearer": sparkpost_headers(token="sp-http-basic-password-9f"),
}
RIGHT = {
    "bearer": sparkpost_headers(token=TOKEN),
    "legacy token": sparkpost_headers(token=TOKEN, legacy=True),
    "basic": sparkpost_headers(credentials=CREDENTIALS),
}


def test_wrong_or_missing_auth_is_refused_401_before_the_body_is_read(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    audit = Audit()
    app = middleware(store, audit)
    _, body = sparkpost_request([sparkpost_event("hard", email="ann@example.com")])
    with caplog.at_level(logging.DEBUG, logger="bounce_middleware"):
        for name, headers in WRONG.items():
            assert post_counting(app, headers, body) == (401, 0), name
    assert audit.calls == []
    assert store.records() == [] and store.records(rejected=True) == []
    assert TOKEN not in caplog.text and "ann@example.com" not in caplog.text
    assert "wrong-password" not in caplog.text
    for name, headers in RIGHT.items():
        event = sparkpost_event("hard", email="ann@example.com")
        _, body = sparkpost_request([event])
        assert post_counting(app, headers, body) == (200, len(body)), name
    assert len(audit.calls) == len(RIGHT)


def test_the_creation_ping_and_an_empty_array_get_200_and_store_nothing(
    store: SQLiteStore,
) -> None:
    audit = Audit()
    app = TestApp(middleware(store, audit))
    assert "ping" in deliver(app, *sparkpost_request(PING, token=TOKEN), 200).text
    deliver(app, *sparkpost_request([], token=TOKEN), 200)
    assert audit.calls == []
    assert store.records() == [] and store.records(rejected=True) == []


def test_a_method_sparkpost_never_uses_is_refused_after_authentication(
    store: SQLiteStore,
) -> None:
    app = TestApp(middleware(store))
    response = app.get(PATH, headers=sparkpost_headers(token=TOKEN), status=405)
    assert response.headers["Allow"] == "POST"
    app.get(PATH, status=401)


def test_a_body_that_is_no_array_is_refused_400_and_kept(store: SQLiteStore) -> None:
    audit = Audit()
    app = TestApp(middleware(store, audit))
    body = json.dumps(sparkpost_event()).encode()
    response = deliver(app, sparkpost_headers(token=TOKEN), body, 400)
    assert "SparkPost posts a JSON array" in response.text
    assert "john@example.com" not in response.text
    [kept] = store.records(rejected=True)
    assert kept.body == body
    assert audit.calls == [] and store.records() == []


def test_a_mixed_batch_dispatches_its_bounces_and_acknowledges_the_rest(
    store: SQLiteStore,
) -> None:
    audit = Audit()
    app = TestApp(middleware(store, audit))
    events = sparkpost_batch("delivery", "hard", "open", "complaint", "delay", "unsubscribe")
    deliver(app, *sparkpost_request(events, token=TOKEN), 200)
    dispatched = keys([events[1], *events[3:]])
    assert audit.calls == dispatched
    assert sorted(r.key for r in store.records()) == sorted(dispatched)
    assert all(r.finished for r in store.records())


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_every_sample_kind_is_accepted_with_the_bearer_token(kind: str, store: SQLiteStore) -> None:
    audit = Audit()
    deliver(
        TestApp(middleware(store, audit)),
        *sample_request(kind, email="ann@example.com", secret=TOKEN),
        200,
    )
    assert len(audit.calls) == int(kind not in ACKNOWLEDGED_SAMPLES)


def test_a_malformed_element_is_kept_alone_and_replay_refuses_it_again(
    store: SQLiteStore,
) -> None:
    audit = Audit()
    app = middleware(store, audit)
    good = sparkpost_batch("hard", "soft")
    broken = sparkpost_event("complaint", raw_rcpt_to=None, rcpt_to=None)
    headers, body = sparkpost_request([good[0], broken, good[1]], token=TOKEN)
    deliver(TestApp(app), headers, body, 200)
    assert audit.calls == keys(good)
    [kept] = store.records(rejected=True)
    assert json.loads(kept.body) == [broken]
    assert kept.reason == "required field rcpt_to is missing or empty"
    ok, line = replay_rejected(app, store, kept, dry_run=False)
    assert not ok and "still refused: required field rcpt_to" in line
    # SparkPost's retry of the whole batch (it should not come after a 200) changes nothing.
    deliver(TestApp(app), headers, body, 200)
    assert audit.calls == keys(good) and len(store.records(rejected=True)) == 1


def test_a_retried_batch_is_not_applied_twice(store: SQLiteStore) -> None:
    audit = Audit()
    app = TestApp(middleware(store, audit))
    first = sparkpost_batch("hard", "complaint")
    headers, body = sparkpost_request(first, token=TOKEN)
    deliver(app, headers, body, 200)
    deliver(app, headers, body, 200)  # the same batch again, same X-MessageSystems-Batch-ID
    later = sparkpost_event("unsubscribe")
    deliver(app, *sparkpost_request([*first, later], token=TOKEN), 200)
    assert audit.calls == keys([*first, later])


def test_events_without_an_event_id_are_not_applied_twice_either(store: SQLiteStore) -> None:
    audit = Audit()
    app = TestApp(middleware(store, audit))
    events = [
        sparkpost_event("hard", email="ann@example.com", event_id=None),
        sparkpost_event("hard", email="bob@example.com", event_id=None),
    ]
    request = sparkpost_request(events, token=TOKEN)
    deliver(app, *request, 200)
    deliver(app, *request, 200)
    assert len(audit.calls) == 2 and len(set(audit.calls)) == 2
    assert all(key.startswith("sparkpost:dedup-sha256:") for key in audit.calls)


def test_a_handler_failure_gets_500_and_replay_finishes_it(store: SQLiteStore) -> None:
    audit, fails = Audit(), FailsFor("locked@example.com")
    app = middleware(store, audit, fails)
    events = [
        sparkpost_event("hard", email="ann@example.com"),
        sparkpost_event("hard", email="locked@example.com"),
        sparkpost_event("complaint", email="bob@example.com"),
    ]
    expected = keys(events)
    headers, body = sparkpost_request(events, token=TOKEN)
    deliver(TestApp(app), headers, body, 500)  # SparkPost retries any non-200 for 8 hours
    assert audit.calls == expected and fails.calls == expected
    [pending] = store.records(unfinished=True)
    assert pending.key == expected[1]

    fails.fixed = True
    ok, line = replay_event(app, pending, dry_run=False)
    assert ok, line
    assert fails.calls == [*expected, expected[1]]
    assert store.records(unfinished=True) == []
    # SparkPost's own retry of the batch, should it still come, runs nothing again.
    deliver(TestApp(app), headers, body, 200)
    assert audit.calls == expected and fails.calls == [*expected, expected[1]]
