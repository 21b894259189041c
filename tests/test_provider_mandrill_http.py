"""Mandrill requests through the real middleware: the HEAD check, signatures, batches, retries.

Requests are signed with the samples module (``bounce_middleware.samples.mandrill``),
whose signer ``tests/test_provider_mandrill.py`` checks against the published vectors.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.validate import validator

import pytest
from webob import Request
from webtest import TestApp, TestResponse
from webtest.http import StopableWSGIServer

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, SQLiteStore, Store
from bounce_middleware.cli.replay import replay_event, replay_rejected
from bounce_middleware.providers.mandrill import Mandrill
from bounce_middleware.samples.mandrill import (
    EMPTY_CHECK,
    SAMPLE_KINDS,
    USER_AGENT,
    empty_check_request,
    mandrill_batch,
    mandrill_body,
    mandrill_event,
    sample_request,
    sign_request,
)
from bounce_middleware.signatures.mandrill import sign_mandrill
from tests.store_apps import Audit, downstream

PATH = "/hooks/mandrill"
KEY = "mandrill-http-tests-webhook-key"
#: The URL entered in Mandrill; WebTest's requests arrive at http://localhost:80/hooks/mandrill.
URL = "https://hooks.example.com/hooks/mandrill"
BOUNCE_KINDS = ("hard", "soft", "deferral", "complaint", "unsubscribe", "suppressed", "blacklist")


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


def middleware(
    provider: Mandrill | None = None, *handlers: Any, store: Store | None = None, **options: Any
) -> BounceMiddleware:
    return BounceMiddleware(
        downstream,
        routes={PATH: provider or Mandrill(key=KEY, url=URL)},
        handlers=handlers,
        store=store,
        **options,
    )


def deliver(app: TestApp[Any], headers: dict[str, str], body: bytes, status: int) -> TestResponse:
    return app.request(PATH, status=status, method="POST", headers=headers, body=body)


def signed(*events: dict[str, Any], key: str = KEY, url: str = URL) -> tuple[dict[str, str], bytes]:
    return sign_request(list(events), key=key, url=url)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore | SQLiteStore]:
    made = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "b.sqlite3")
    yield made
    made.close()


# -- Mandrill's checks when a webhook is saved ----------------------------------------------


def test_head_is_answered_200_without_a_body_or_any_authentication(tmp_path: Path) -> None:
    audit, store = Audit(), SQLiteStore(tmp_path / "b.sqlite3")
    app = validator(middleware(None, audit, store=store))  # a real WSGI call, checked
    environ = Request.blank(PATH, method="HEAD", base_url="https://hooks.example.com").environ
    answers: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        answers.append(status)
        return lambda data: None

    result = app(environ, start_response)
    try:
        assert b"".join(result) == b""
    finally:
        getattr(result, "close", lambda: None)()
    assert answers == ["200 OK"]
    assert audit.calls == [] and store.records() == [] and store.records(rejected=True) == []
    store.close()


def test_head_over_http_gets_200_from_a_route_that_knows_no_key_yet_but_its_own() -> None:
    server = StopableWSGIServer.create(middleware(), host="127.0.0.1", port=0)
    try:
        port = int(server.getsockname()[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("HEAD", PATH)
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"")
        connection.close()
    finally:
        server.shutdown()


def test_the_empty_check_signed_with_the_public_test_key_is_answered_200(store: Store) -> None:
    audit = Audit()
    app = TestApp(middleware(None, audit, store=store))
    headers, body = empty_check_request(url=URL)
    assert body == EMPTY_CHECK
    response = deliver(app, headers, body, 200)
    assert "empty batch" in response.text
    deliver(app, *sign_request("[]", key=KEY, url=URL), 200)  # signed with the real key too
    assert audit.calls == [] and store.records() == [] and store.records(rejected=True) == []


def test_a_method_mandrill_never_uses_is_refused_405_after_authentication() -> None:
    app = TestApp(middleware())
    headers = {"X-Mandrill-Signature": sign_mandrill(KEY.encode(), url=URL, form={})}
    response = app.get(PATH, headers=headers, status=405)
    assert response.headers["Allow"] == "HEAD, POST"
    app.get(PATH, status=401)  # unsigned: not Mandrill's


# -- authentication -------------------------------------------------------------------------


def test_behind_a_proxy_the_configured_url_is_what_verifies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = Audit()
    proxied = {"HTTP_HOST": "10.0.0.5:8080", "wsgi.url_scheme": "http"}
    event = mandrill_event("hard", email="ann@example.com")
    # Mandrill signs the public https URL; the application sees http://10.0.0.5:8080/...
    configured = TestApp(middleware(None, audit), extra_environ=proxied)
    headers, body = signed(event)
    configured.post(PATH, body.decode(), headers=headers, status=200)
    assert len(audit.calls) == 1
    unconfigured = TestApp(middleware(Mandrill(key=KEY), audit), extra_environ=proxied)
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        unconfigured.post(PATH, body.decode(), headers=headers, status=401)
    assert "set url= to the URL entered in Mandrill" in caplog.text
    # Without url=, the request's own URL is what must have been signed.
    headers, body = signed(mandrill_event("soft"), url="http://10.0.0.5:8080" + PATH)
    unconfigured.post(PATH, body.decode(), headers=headers, status=200)
    assert len(audit.calls) == 2


def test_wrong_missing_and_tampered_signatures_get_401_and_run_nothing(
    caplog: pytest.LogCaptureFixture, store: Store
) -> None:
    audit = Audit()
    app = TestApp(middleware(None, audit, store=store))
    event = mandrill_event("hard", email="ann@example.com")
    headers, body = signed(event)
    tampered = mandrill_body([mandrill_event("hard", email="eve@example.com")])
    cases = {
        "wrong key": signed(event, key="another-key"),
        "other URL": signed(event, url=URL + "/"),
        "test key, real events": signed(event, key="test-webhook"),
        "no signature": ({"Content-Type": headers["Content-Type"]}, body),
        "tampered body": (headers, tampered),
        "field twice": (headers, body + b"&" + body),
        "not base64": (headers | {"X-Mandrill-Signature": "not base64!"}, body),
    }
    for name, (request_headers, request_body) in cases.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="bounce_middleware"):
            response = deliver(app, request_headers, request_body, 401)
        assert response.text.strip() == "not authenticated", name
        assert "example.com" not in caplog.text, name  # no address, no URL
        assert headers["X-Mandrill-Signature"] not in caplog.text, name
    assert audit.calls == []
    assert store.records() == [] and store.records(rejected=True) == []


def test_either_of_two_keys_is_accepted_while_rotating() -> None:
    audit = Audit()
    app = TestApp(middleware(Mandrill(key=["old-key", "new-key"], url=URL), audit))
    deliver(app, *signed(mandrill_event(), key="old-key"), 200)
    deliver(app, *signed(mandrill_event(), key="new-key"), 200)
    deliver(app, *signed(mandrill_event(), key=KEY), 401)
    assert len(audit.calls) == 2


class CountingInput(io.BytesIO):
    """``wsgi.input`` that counts the bytes the application read."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def test_a_post_without_a_signature_is_refused_before_its_body_is_read() -> None:
    headers, body = signed(*mandrill_batch("hard", "soft"))
    for sent, status, consumed in (({}, 401, 0), (headers, 200, len(body))):
        stream = CountingInput(body)
        request = Request.blank(PATH, method="POST", headers=sent, base_url=URL[: -len(PATH)])
        request.environ["wsgi.input"] = stream
        request.environ["CONTENT_LENGTH"] = str(len(body))
        assert request.get_response(middleware()).status_int == status
        assert stream.consumed == consumed


# -- batches --------------------------------------------------------------------------------


def test_a_thousand_event_batch_is_dispatched_once_and_a_retry_applies_nothing(
    tmp_path: Path,
) -> None:
    audit, store = Audit(), SQLiteStore(tmp_path / "b.sqlite3")
    # A full batch can pass 1 MiB once form-encoded: the cap is raised as the README says.
    app = TestApp(middleware(None, audit, store=store, max_body_size=8 * 1024 * 1024))
    events = [
        mandrill_event(BOUNCE_KINDS[n % len(BOUNCE_KINDS)], email=f"user{n}@example.com")
        for n in range(1000)
    ]
    headers, body = signed(*events)
    deliver(app, headers, body, 200)
    assert len(audit.calls) == len(set(audit.calls)) == 1000
    deliver(app, headers, body, 200)  # Mandrill retries a batch it thinks failed
    assert len(audit.calls) == 1000
    records = store.records(limit=None)
    assert len(records) == 1000 and all(r.finished for r in records)
    store.close()


def test_a_mixed_batch_dispatches_bounces_and_acknowledges_the_rest(store: Store) -> None:
    audit = Audit()
    app = TestApp(middleware(None, audit, store=store))
    events = mandrill_batch("send", "hard", "open", "deferral", "delivered", "blacklist")
    deliver(app, *signed(*events), 200)
    assert len(audit.calls) == 3
    assert sorted(r.type for r in store.records()) == ["blacklist", "deferral", "hard_bounce"]


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_every_sample_kind_is_accepted_signed(kind: str) -> None:
    audit = Audit()
    app = TestApp(middleware(None, audit))
    headers, body = sample_request(kind, email="ann@example.com", secret=KEY, url=URL)
    assert headers["User-Agent"] == USER_AGENT == "Mandrill-Webhook/1.0"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    deliver(app, headers, body, 200)
    assert len(audit.calls) == int(kind in BOUNCE_KINDS)


def test_an_event_twice_in_one_batch_is_dispatched_once(store: Store) -> None:
    audit = Audit()
    event = mandrill_event()
    deliver(TestApp(middleware(None, audit, store=store)), *signed(event, event), 200)
    assert len(audit.calls) == 1


def test_an_inbound_message_is_kept_alone_and_the_rest_dispatched(store: Store) -> None:
    audit = Audit()
    mw = middleware(None, audit, store=store)
    app = TestApp(mw)
    inbound = {"event": "inbound", "msg": {"raw_msg": "From: a@example.com\n\nhi"}, "ts": 1}
    headers, body = signed(mandrill_event("hard"), inbound, mandrill_event("complaint"))
    deliver(app, headers, body, 200)
    assert len(audit.calls) == 2
    [kept] = store.records(rejected=True)
    assert kept.reason == "inbound message on a tracking webhook: misrouted"
    assert parse_qsl(kept.body.decode()) == [
        ("mandrill_events", json.dumps([inbound], separators=(",", ":")))
    ]
    deliver(app, headers, body, 200)  # a retry changes nothing
    assert len(audit.calls) == 2 and len(store.records(rejected=True)) == 1
    ok, line = replay_rejected(mw, store, kept, dry_run=False)
    assert not ok and "still refused: inbound message" in line


def test_an_authentic_body_that_is_no_batch_is_refused_400_and_kept(store: Store) -> None:
    audit = Audit()
    headers, body = sign_request("GARBAGE", key=KEY, url=URL)
    response = deliver(TestApp(middleware(None, audit, store=store)), headers, body, 400)
    assert "body is not valid JSON" in response.text
    [kept] = store.records(rejected=True)
    assert kept.body == body and audit.calls == []


def test_a_failing_handler_gets_500_and_replay_finishes_the_event(tmp_path: Path) -> None:
    audit, fails = Audit(), FailsFor("locked@example.com")
    store = SQLiteStore(tmp_path / "b.sqlite3")
    mw = middleware(None, audit, fails, store=store)
    app = TestApp(mw)
    events = [
        mandrill_event("hard", email="ann@example.com"),
        mandrill_event("hard", email="locked@example.com"),
        mandrill_event("blacklist", email="bob@example.com"),
    ]
    deliver(app, *signed(*events), 500)
    assert len(audit.calls) == 3
    [record] = store.records(unfinished=True)
    assert record.email == "locked@example.com"
    fails.fixed = True  # Mandrill gave up retrying; the operator runs replay
    ok, line = replay_event(mw, record, dry_run=False)
    assert ok, line
    assert store.records(unfinished=True) == []
    assert len(audit.calls) == 3  # the handler that had completed did not run again
    assert fails.calls.count(record.key) == 2
    store.close()
