"""Resend through the real middleware (WebTest, SQLite): statuses, retries, replays, samples."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webob import Request
from webtest import TestApp, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, SQLiteStore, Store
from bounce_middleware.cli.replay import replay_event, replay_rejected
from bounce_middleware.providers.resend import Resend, replay_envelope
from bounce_middleware.request import post
from bounce_middleware.samples.resend import (
    SAMPLE_KINDS,
    resend_event,
    sample_request,
    sign_request,
)
from tests.store_apps import Audit, Flaky, downstream
from tests.test_provider_resend import (
    PUBLISHED_BODY,
    PUBLISHED_ID,
    PUBLISHED_SECRET,
    PUBLISHED_SIGNATURE,
    PUBLISHED_TS,
    SECRET,
    recipe,
)

PATH = "/hooks/resend"
DISPATCHED = {
    "hard": "hard",
    "suppressed": "suppressed",
    "soft": "soft",
    "delayed": "soft",
    "complaint": "complaint",
    "error": "error",
}


class Seen:
    """Records each bounce."""

    def __init__(self) -> None:
        self.bounces: list[Bounce] = []

    def __call__(self, bounce: Bounce) -> None:
        self.bounces.append(bounce)


def make_middleware(
    *handlers: Any, store: Store | None = None, provider: Resend | None = None
) -> BounceMiddleware:
    routes = {PATH: provider or Resend(secret=SECRET)}
    return BounceMiddleware(downstream, routes=routes, handlers=handlers, store=store)


def deliver(
    app: TestApp | BounceMiddleware, request: tuple[dict[str, str], bytes], status: int
) -> TestResponse:
    """POST the exact bytes (the signature covers them), expecting ``status``."""
    test_app = app if isinstance(app, TestApp) else TestApp(app)
    headers, body = request
    response = test_app.request(PATH, method="POST", headers=headers, body=body, status="*")
    assert response.status_int == status, response.text
    return response


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore | SQLiteStore]:
    made = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "b.sqlite3")
    yield made
    made.close()


# -- samples and kinds ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_every_sample_kind_is_dispatched_or_acknowledged(kind: str) -> None:
    seen = Seen()
    deliver(
        make_middleware(seen), sample_request(kind, email="ann@example.com", secret=SECRET), 200
    )
    if kind in DISPATCHED:
        [bounce] = seen.bounces
        assert (bounce.kind, bounce.email) == (DISPATCHED[kind], "ann@example.com")
        assert bounce.key.startswith("resend:msg_")
    else:
        assert seen.bounces == []


def test_several_recipients_are_dispatched_as_unknown_through_the_middleware() -> None:
    seen = Seen()
    event = resend_event("hard", to=["ann@example.com", "bob@example.com"])
    deliver(make_middleware(seen), sign_request(event, secret=SECRET), 200)
    [bounce] = seen.bounces
    assert (bounce.kind, bounce.email, bounce.permanent) == ("unknown", "ann@example.com", False)


# -- authentication ---------------------------------------------------------------------------


def test_the_published_vector_authenticates_and_its_body_is_refused_400_and_kept(
    store: Store,
) -> None:
    headers = {
        "Content-Type": "application/json",
        "svix-id": PUBLISHED_ID,
        "svix-timestamp": PUBLISHED_TS,
        "svix-signature": PUBLISHED_SIGNATURE,
    }
    resend = Resend(secret=PUBLISHED_SECRET, clock=lambda: float(PUBLISHED_TS))
    seen = Seen()
    response = deliver(
        make_middleware(seen, store=store, provider=resend), (headers, PUBLISHED_BODY), 400
    )
    assert "field type is missing" in response.text
    assert seen.bounces == []
    [kept] = store.records(rejected=True)
    assert (kept.provider, kept.body) == ("resend", replay_envelope(PUBLISHED_ID, PUBLISHED_BODY))
    # Today's clock: the same request is stale.
    deliver(make_middleware(seen, provider=Resend(secret=PUBLISHED_SECRET)), (headers, b"{}"), 401)


def unauthentic_requests() -> dict[str, tuple[dict[str, str], bytes]]:
    event = resend_event("hard", email="ann@example.com")
    headers, body = sign_request(event, secret=SECRET)
    now = int(time.time())
    return {
        "wrong secret": sign_request(event, secret="whsec_c29tZW9uZSBlbHNl"),
        "tampered body": (headers, body.replace(b"ann@", b"bob@")),
        "stale timestamp": sign_request(event, secret=SECRET, timestamp=now - 301),
        "future timestamp": sign_request(event, secret=SECRET, timestamp=now + 360),
        "no signature": ({"svix-id": "msg_1", "svix-timestamp": str(now)}, body),
        "no headers": ({"Content-Type": "application/json"}, body),
    }


@pytest.mark.parametrize("case", sorted(unauthentic_requests()))
def test_unauthentic_requests_get_401_and_nothing_is_dispatched_or_kept(
    case: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    headers, body = unauthentic_requests()[case]
    response = deliver(make_middleware(seen, store=store), (headers, body), 401)
    assert response.text.strip() == "not authenticated"
    assert "resend webhook refused" in caplog.text
    # The log says which check failed, never the secret, the signature or the body.
    for secret in (SECRET, headers.get("svix-signature", "v1,"), "ann@example.com", "bob@"):
        assert secret not in caplog.text
    assert seen.bounces == []
    assert store.records() == [] and store.records(rejected=True) == []


class CountingInput(io.BytesIO):
    """``wsgi.input`` that counts the bytes the application read."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def test_stale_future_or_missing_headers_are_refused_before_the_body_is_read() -> None:
    seen = Seen()
    middleware = make_middleware(seen)
    event = resend_event("hard")
    now = int(time.time())
    for stamp, status in ((now - 400, 401), (now + 400, 401), (None, 401), (now, 200)):
        headers, body = sign_request(event, secret=SECRET, timestamp=stamp or now)
        if stamp is None:
            del headers["svix-timestamp"]
        stream = CountingInput(body)
        request = Request.blank(PATH, method="POST", headers=headers)
        request.environ["wsgi.input"] = stream
        request.environ["CONTENT_LENGTH"] = str(len(body))
        assert request.get_response(middleware).status_int == status
        assert stream.consumed == (len(body) if status == 200 else 0)
    assert len(seen.bounces) == 1


def test_secrets_rotate_through_the_middleware() -> None:
    seen = Seen()
    old = "whsec_b2xkLXNlY3JldC1rZXk="
    middleware = make_middleware(seen, provider=Resend(secret=[old, SECRET]))
    deliver(middleware, sample_request("hard", email="a@example.com", secret=old), 200)
    deliver(middleware, sample_request("hard", email="b@example.com", secret=SECRET), 200)
    retired = "whsec_cmV0aXJlZA=="
    deliver(middleware, sample_request("hard", email="c@example.com", secret=retired), 401)
    assert [b.email for b in seen.bounces] == ["a@example.com", "b@example.com"]


def test_a_method_resend_never_uses_is_refused_after_authentication() -> None:
    headers, body = sign_request(b"", secret=SECRET)
    app = TestApp(make_middleware())
    assert app.get(PATH, headers=headers, status=405).headers["Allow"] == "POST"


# -- retries and replays --------------------------------------------------------------------


def test_a_retry_with_the_same_svix_id_is_not_applied_twice(store: Store) -> None:
    audit = Audit()
    middleware = make_middleware(audit, store=store)
    event = resend_event("complaint", email="ann@example.com")
    deliver(middleware, sign_request(event, secret=SECRET, msg_id="msg_retried"), 200)
    # Svix signs each attempt afresh: a new timestamp, the same svix-id.
    later = int(time.time()) + 5
    deliver(
        middleware, sign_request(event, secret=SECRET, msg_id="msg_retried", timestamp=later), 200
    )
    assert audit.calls == ["resend:msg_retried"]
    deliver(middleware, sign_request(event, secret=SECRET, msg_id="msg_other"), 200)
    assert audit.calls == ["resend:msg_retried", "resend:msg_other"]


def test_a_handler_failure_gets_500_the_retry_finishes_it_once(store: Store) -> None:
    flaky, audit = Flaky(), Audit()
    middleware = make_middleware(audit, flaky, store=store)
    event = resend_event("hard", email="ann@example.com")
    deliver(middleware, sign_request(event, secret=SECRET, msg_id="msg_flaky"), 500)
    flaky.fixed = True
    deliver(middleware, sign_request(event, secret=SECRET, msg_id="msg_flaky"), 200)
    deliver(middleware, sign_request(event, secret=SECRET, msg_id="msg_flaky"), 200)
    assert audit.calls == ["resend:msg_flaky"]
    assert flaky.calls == ["resend:msg_flaky", "resend:msg_flaky"]


def test_a_handler_failure_is_finished_by_replay_from_the_stored_body(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "replay.sqlite3")
    flaky, audit = Flaky(), Audit()
    middleware = make_middleware(audit, flaky, store=store)
    event = resend_event("hard", email="ann@example.com")
    deliver(middleware, sign_request(event, secret=SECRET, msg_id="msg_to_replay"), 500)
    [record] = store.records(unfinished=True)
    assert record.key == "resend:msg_to_replay"
    assert json.loads(record.body)["svix-id"] == "msg_to_replay"
    flaky.fixed = True
    # replay parses the stored body without headers and looks for the same key.
    ok, line = replay_event(middleware, record, dry_run=False)
    assert ok, line
    assert "resend:msg_to_replay" in line and "ran tests.store_apps.Flaky -> 200" in line
    assert flaky.calls == ["resend:msg_to_replay", "resend:msg_to_replay"]
    assert audit.calls == ["resend:msg_to_replay"]
    assert store.records(unfinished=True) == []
    # Resend's own retry, should it still come, runs nothing.
    deliver(middleware, sign_request(event, secret=SECRET, msg_id="msg_to_replay"), 200)
    assert audit.calls == ["resend:msg_to_replay"] and len(flaky.calls) == 2
    store.close()


def test_an_authentic_malformed_body_gets_400_is_kept_and_still_refused_by_replay(
    store: Store,
) -> None:
    seen = Seen()
    middleware = make_middleware(seen, store=store)
    request = sign_request(resend_event("hard", to=7), secret=SECRET, msg_id="msg_refused")
    response = deliver(middleware, request, 400)
    assert "field data.to must be an array of strings" in response.text
    [kept] = store.records(rejected=True)
    # Kept with its svix-id, so a release that accepts it keys it as Resend's retries.
    assert kept.body == replay_envelope("msg_refused", request[1])
    ok, line = replay_rejected(middleware, store, kept, dry_run=False)
    assert not ok and "still refused: field data.to" in line
    assert seen.bounces == []


def test_tags_nested_too_deeply_to_write_back_get_400_and_are_kept(store: Store) -> None:
    # 600 objects deep in data.tags decode, but cannot be written back as a tag's text:
    # that raised RecursionError (a 500 Resend retries for a day) instead of a refusal.
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(600):
        inner["a"] = {}
        inner = inner["a"]
    seen = Seen()
    middleware = make_middleware(seen, store=store)
    request = sign_request(resend_event("hard", tags={"k": deep}), secret=SECRET)
    response = deliver(middleware, request, 400)
    assert "body is nested too deeply" in response.text
    [kept] = store.records(rejected=True)
    assert kept.reason == "body is nested too deeply"
    assert seen.bounces == [] and store.records() == []


def test_the_body_kept_for_a_refused_request_parses_to_the_svix_id_key() -> None:
    provider = Resend(secret=SECRET)
    headers, body = sign_request(resend_event("hard"), secret=SECRET, msg_id="msg_kept")
    kept = provider.kept_body(post(PATH, body, headers))
    [bounce] = provider.parse(post(body=kept)).events
    assert bounce.key == "resend:msg_kept"
    # Nothing to embed: a body that is not a JSON object, or no usable id, is kept as is.
    assert provider.kept_body(post(PATH, b"not json", headers)) == b"not json"
    assert provider.kept_body(post(PATH, body, {})) == body


def test_a_rejected_body_without_headers_replays_with_a_stable_key(store: Store) -> None:
    # A record kept as received (no svix-id): replay dispatches it under a key made
    # from the event's type, time, e-mail id and recipients, the same on every replay.
    seen = Seen()
    middleware = make_middleware(seen, store=store)
    body = json.dumps(resend_event("complaint", email="ann@example.com")).encode()
    store.reject("resend", body, "refused by an older release")
    [kept] = store.records(rejected=True)
    ok, line = replay_rejected(middleware, store, kept, dry_run=False)
    assert ok, line
    [bounce] = seen.bounces
    assert bounce.key.startswith("resend:dedup-sha256:") and bounce.kind == "complaint"
    [again] = Resend(secret=SECRET).parse(post(body=body)).events
    assert again.key == bounce.key
    assert middleware.dispatch(again).status == 200
    assert len(seen.bounces) == 1


def test_a_retry_while_another_worker_holds_the_event_gets_503(store: Store) -> None:
    seen = Seen()
    middleware = make_middleware(seen, store=store)
    request = sign_request(resend_event("soft"), secret=SECRET, msg_id="msg_busy")
    [bounce] = Resend(secret=SECRET).parse(post(PATH, request[1], request[0])).events
    running = store.claim(bounce, lease_seconds=60)
    response = deliver(middleware, request, 503)
    assert "Retry-After" in response.headers
    store.release(running, finished=False)
    deliver(middleware, request, 200)
    assert [b.key for b in seen.bounces] == ["resend:msg_busy"]


# -- the samples ----------------------------------------------------------------------------


def test_samples_refuse_an_unknown_kind_and_a_missing_or_malformed_secret() -> None:
    with pytest.raises(ValueError, match="unknown Resend sample kind 'bounce'"):
        resend_event("bounce")
    for missing in (None, ""):
        with pytest.raises(ValueError, match="signing secret"):
            sample_request("hard", email="ann@example.com", secret=missing)
    with pytest.raises(ValueError, match='not "whsec_" followed by base64'):
        sample_request("hard", email="ann@example.com", secret="whsec_!!")


def test_sample_overrides_reach_the_top_level_or_data() -> None:
    event = resend_event(
        "hard", email="x@example.org", created_at="2024-01-01T00:00:00.000Z", tags=[]
    )
    assert event["created_at"] == "2024-01-01T00:00:00.000Z"
    assert event["data"]["tags"] == [] and event["data"]["to"] == ["x@example.org"]
    assert event["type"] == "email.bounced"
    assert event["data"]["bounce"]["type"] == "Permanent"
    assert resend_event()["data"]["email_id"] != resend_event()["data"]["email_id"]
    assert resend_event("sent", type="email.opened")["type"] == "email.opened"
    # Each call gets its own copy of the kind's fields.
    resend_event("hard")["data"]["bounce"]["type"] = "Transient"
    assert resend_event("hard")["data"]["bounce"]["type"] == "Permanent"


def test_sign_request_signs_the_exact_body_with_the_given_id_and_time() -> None:
    headers, body = sign_request(
        {"type": "email.sent"}, secret=SECRET, msg_id="msg_fixed", timestamp=1700000000
    )
    assert headers["svix-id"] == "msg_fixed" and headers["svix-timestamp"] == "1700000000"
    key = b"resend-test-key-24-bytes"
    assert headers["svix-signature"] == recipe(key, "msg_fixed", "1700000000", body)
    assert json.loads(body) == {"type": "email.sent"}
    raw = b'{"type":\r\n"email.sent"}'
    assert sign_request(raw, secret=SECRET)[1] == raw
    first, second = sign_request({}, secret=SECRET)[0], sign_request({}, secret=SECRET)[0]
    assert first["svix-id"].startswith("msg_") and first["svix-id"] != second["svix-id"]
