"""SendGrid requests through the real middleware: signatures, batches, stores, retries."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webob import Request
from webtest import TestApp, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, SQLiteStore, Store
from bounce_middleware.providers.sendgrid import SendGrid
from bounce_middleware.samples.sendgrid import (
    SENDGRID_KINDS,
    TEST_PUBLIC_KEY,
    sample_request,
    sendgrid_batch,
    sendgrid_body,
    sendgrid_event,
    sign_request,
)
from bounce_middleware.signatures.sendgrid import MAX_AGE, SIGNATURE_HEADER, TIMESTAMP_HEADER
from bounce_middleware.testing import basic_auth_header
from tests.signatures.selfmade import ec_key, sendgrid_ui_key
from tests.store_apps import Audit, downstream
from tests.test_signatures_sendgrid import (
    PUBLISHED_BODY,
    PUBLISHED_KEY,
    PUBLISHED_SIGNATURE,
    PUBLISHED_TIMESTAMP,
)

PATH = "/hooks/sendgrid"
CREDENTIALS = "sendgrid:sendgrid-http-tests-password"
#: Wide enough to accept the SDKs' vector, signed in September 2020.
YEARS = 100 * 365 * 24 * 3600.0


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


def make_app(
    provider: SendGrid | None = None, *handlers: Any, store: Store | None = None
) -> TestApp:
    return TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: provider or SendGrid(public_key=TEST_PUBLIC_KEY)},
            handlers=handlers,
            store=store,
        )
    )


def deliver(app: TestApp, headers: dict[str, str], body: bytes, status: int) -> TestResponse:
    """POST the exact bytes (the signature covers them), expecting ``status``."""
    return app.request(PATH, status=status, method="POST", headers=headers, body=body)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore | SQLiteStore]:
    made = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "b.sqlite3")
    yield made
    made.close()


# -- authentication -------------------------------------------------------------------------


def test_the_published_sdk_vector_is_accepted_as_received() -> None:
    audit = Audit()
    app = make_app(SendGrid(public_key=PUBLISHED_KEY, max_age=YEARS), audit)
    headers = {SIGNATURE_HEADER: PUBLISHED_SIGNATURE, TIMESTAMP_HEADER: PUBLISHED_TIMESTAMP}
    deliver(app, {**headers, "Content-Type": "application/json"}, PUBLISHED_BODY, 200)
    assert audit.calls == ["sendgrid:ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"]


def test_the_published_vector_is_stale_under_the_default_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = Audit()
    app = make_app(SendGrid(public_key=PUBLISHED_KEY), audit)
    headers = {SIGNATURE_HEADER: PUBLISHED_SIGNATURE, TIMESTAMP_HEADER: PUBLISHED_TIMESTAMP}
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        response = deliver(app, headers, PUBLISHED_BODY, 401)
    assert response.text.strip() == "not authenticated"
    assert "stale" in caplog.text
    assert audit.calls == []


def refused(
    app: TestApp, headers: dict[str, str], body: bytes, caplog: pytest.LogCaptureFixture
) -> str:
    """Post a request that must get 401; the logged reason."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        response = deliver(app, headers, body, 401)
    assert response.text.strip() == "not authenticated"
    assert headers.get(SIGNATURE_HEADER, "<none>") not in caplog.text  # never logged
    assert b"example.com" not in caplog.text.encode()
    return caplog.text


def test_wrong_stale_future_missing_and_reserialised_requests_get_401_and_run_nothing(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    audit, store = Audit(), SQLiteStore(tmp_path / "b.sqlite3")
    app = make_app(None, audit, store=store)
    events = sendgrid_batch("hard", "delivered", "complaint")
    headers, body = sign_request(events)
    now = int(time.time())
    other_headers, _ = sign_request(events, private_key=ec_key(7))
    _, other_body = sign_request(sendgrid_batch("hard"))
    signed_other_body = sign_request(other_body)[0][SIGNATURE_HEADER]
    cases = {
        "wrong signature": (headers | {SIGNATURE_HEADER: signed_other_body}, body),
        "wrong key": (other_headers, body),
        "stale": (sign_request(events, timestamp=now - int(MAX_AGE) - 60)[0], body),
        "future": (sign_request(events, timestamp=now + 3600)[0], body),
        "no signature": ({TIMESTAMP_HEADER: headers[TIMESTAMP_HEADER]}, body),
        "no timestamp": ({SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}, body),
        "other timestamp": (headers | {TIMESTAMP_HEADER: str(now - 1)}, body),
        "re-serialised": (headers, json.dumps(json.loads(body)).encode()),
        "CRLF lost": (headers, body.replace(b"\r\n", b"")),
        "not base64": (headers | {SIGNATURE_HEADER: "not base64!"}, body),
    }
    logged = {name: refused(app, h, b, caplog) for name, (h, b) in cases.items()}
    assert "does not verify" in logged["wrong signature"]
    assert "does not verify" in logged["wrong key"]
    assert "stale" in logged["stale"]
    assert "future" in logged["future"]
    assert f"missing {SIGNATURE_HEADER}" in logged["no signature"]
    assert f"missing {TIMESTAMP_HEADER}" in logged["no timestamp"]
    assert "does not verify" in logged["re-serialised"]
    assert "not base64" in logged["not base64"]
    assert audit.calls == []
    assert store.records() == [] and store.records(rejected=True) == []
    store.close()


def test_a_retry_a_day_later_keeping_its_timestamp_is_accepted() -> None:
    audit = Audit()
    app = make_app(None, audit)
    headers, body = sign_request([sendgrid_event()], timestamp=int(time.time()) - 23 * 3600)
    deliver(app, headers, body, 200)
    assert len(audit.calls) == 1


def test_either_of_two_keys_is_accepted_while_rotating(caplog: pytest.LogCaptureFixture) -> None:
    audit = Audit()
    app = make_app(SendGrid(public_key=[sendgrid_ui_key(ec_key(1)), TEST_PUBLIC_KEY]), audit)
    deliver(app, *sign_request([sendgrid_event()]), 200)
    deliver(app, *sign_request([sendgrid_event()], private_key=ec_key(1)), 200)
    refused(app, *sign_request([sendgrid_event()], private_key=ec_key(2)), caplog)
    assert len(audit.calls) == 2


def test_basic_credentials_alone_or_with_the_signature() -> None:
    audit = Audit()
    basic = {"Authorization": basic_auth_header(*CREDENTIALS.split(":"))}
    only_basic = make_app(SendGrid(credentials=[CREDENTIALS]), audit)
    body = sendgrid_body([sendgrid_event()])
    response = deliver(only_basic, {}, body, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    deliver(only_basic, basic, body, 200)

    both = make_app(SendGrid(public_key=TEST_PUBLIC_KEY, credentials=[CREDENTIALS]), Audit())
    headers, body = sign_request([sendgrid_event()])
    deliver(both, headers, body, 401)  # signed, no credentials
    deliver(both, basic, body, 401)  # credentials, no signature
    deliver(both, headers | basic, body, 200)
    assert len(audit.calls) == 1


class CountingInput(io.BytesIO):
    """``wsgi.input`` that counts the bytes the application read."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


@pytest.mark.parametrize("public_key", [None, TEST_PUBLIC_KEY])
def test_wrong_basic_credentials_are_refused_before_the_body_is_read(
    public_key: str | None,
) -> None:
    audit = Audit()
    provider = SendGrid(public_key=public_key, credentials=[CREDENTIALS])
    middleware = BounceMiddleware(downstream, routes={PATH: provider}, handlers=[audit])
    headers, body = sign_request([sendgrid_event()])
    for password, status, consumed in (
        ("wrong", 401, 0),
        ("sendgrid-http-tests-password", 200, len(body)),
    ):
        stream = CountingInput(body)
        request = Request.blank(PATH, method="POST", headers=headers)
        request.headers["Authorization"] = basic_auth_header("sendgrid", password)
        request.environ["wsgi.input"] = stream
        request.environ["CONTENT_LENGTH"] = str(len(body))
        assert request.get_response(middleware).status_int == status
        assert stream.consumed == consumed
    assert len(audit.calls) == 1


def test_a_method_sendgrid_never_uses_is_refused_after_authentication() -> None:
    headers, _ = sign_request(b"")
    app = make_app()
    assert app.get(PATH, headers=headers, status=405).headers["Allow"] == "POST"


# -- batches --------------------------------------------------------------------------------


def test_a_mixed_batch_dispatches_its_bounces_and_acknowledges_the_rest(store: Store) -> None:
    audit = Audit()
    app = make_app(None, audit, store=store)
    events = sendgrid_batch("processed", "hard", "delivered", "soft", "open", "click", "complaint")
    deliver(app, *sign_request(events), 200)
    dispatched = [f"sendgrid:{e['sg_event_id']}" for e in (events[1], events[3], events[6])]
    assert audit.calls == dispatched
    assert sorted(r.key for r in store.records()) == sorted(dispatched)
    assert all(r.finished for r in store.records())


@pytest.mark.parametrize("kind", SENDGRID_KINDS)
def test_every_sample_kind_is_accepted_signed(kind: str) -> None:
    audit = Audit()
    deliver(make_app(None, audit), *sample_request(kind, email="ann@example.com"), 200)
    expected = kind not in ("processed", "delivered", "open", "click")
    assert len(audit.calls) == int(expected)


def test_an_empty_batch_is_answered_200(store: Store) -> None:
    deliver(make_app(store=store), *sign_request([]), 200)
    assert store.records() == [] and store.records(rejected=True) == []


def test_a_body_that_is_no_batch_is_refused_400_and_kept_for_replay(store: Store) -> None:
    audit = Audit()
    body = json.dumps(sendgrid_event()).encode()
    response = deliver(make_app(None, audit, store=store), *sign_request(body), 400)
    assert "SendGrid posts a JSON array of events" in response.text
    [kept] = store.records(rejected=True)
    assert kept.body == body
    assert audit.calls == []


def test_a_malformed_event_is_kept_alone_and_the_rest_of_the_batch_dispatched(
    store: Store,
) -> None:
    audit = Audit()
    app = make_app(None, audit, store=store)
    good = sendgrid_batch("hard", "soft")
    broken = sendgrid_event("complaint")
    del broken["email"]
    headers, body = sign_request([good[0], broken, good[1]])
    deliver(app, headers, body, 200)
    assert audit.calls == [f"sendgrid:{e['sg_event_id']}" for e in good]
    [kept] = store.records(rejected=True)
    assert json.loads(kept.body) == [broken]
    assert kept.reason == "required field email is missing or empty"
    # SendGrid sends nothing again after a 200; a retry anyway changes nothing.
    deliver(app, headers, body, 200)
    assert len(audit.calls) == 2 and len(store.records(rejected=True)) == 1


def test_a_retried_batch_runs_only_what_is_not_done(store: Store) -> None:
    audit = Audit()
    app = make_app(None, audit, store=store)
    first = sendgrid_batch("hard", "complaint")
    deliver(app, *sign_request(first), 200)
    later = sendgrid_event("unsubscribe")
    deliver(app, *sign_request([*first, later]), 200)
    assert audit.calls == [f"sendgrid:{e['sg_event_id']}" for e in [*first, later]]


def test_an_event_twice_in_one_batch_is_dispatched_once(store: Store) -> None:
    audit = Audit()
    event = sendgrid_event()
    deliver(make_app(None, audit, store=store), *sign_request([event, event]), 200)
    assert audit.calls == [f"sendgrid:{event['sg_event_id']}"]


def test_a_handler_failing_for_one_event_gets_500_and_the_retry_runs_only_that_handler(
    store: Store,
) -> None:
    audit, fails = Audit(), FailsFor("locked@example.com")
    app = make_app(None, audit, fails, store=store)
    events = [
        sendgrid_event("hard", email="ann@example.com"),
        sendgrid_event("hard", email="locked@example.com"),
        sendgrid_event("complaint", email="bob@example.com"),
    ]
    keys = [f"sendgrid:{e['sg_event_id']}" for e in events]
    headers, body = sign_request(events)
    deliver(app, headers, body, 500)
    assert audit.calls == keys and fails.calls == keys
    deliver(app, headers, body, 500)  # still failing: only that event's failing handler ran
    assert audit.calls == keys and fails.calls == [*keys, keys[1]]
    fails.fixed = True
    deliver(app, headers, body, 200)
    deliver(app, headers, body, 200)
    assert audit.calls == keys
    assert fails.calls == [*keys, keys[1], keys[1]]
    assert all(r.finished for r in store.records())
