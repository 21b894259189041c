"""Mailgun through the real middleware (WebTest): statuses, replays, retries, kept refusals."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from webtest import TestApp, TestRequest, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, SQLiteStore
from bounce_middleware.providers.mailgun import Mailgun
from bounce_middleware.request import post as webhook_request
from bounce_middleware.samples.mailgun import (
    MAILGUN_KINDS,
    mailgun_event,
    sample_request,
    sign_request,
)
from bounce_middleware.store import Store
from bounce_middleware.testing import basic_auth_header
from tests.test_provider_mailgun import recipe
from tests.test_provider_mailgun_auth import PUBLISHED, PUBLISHED_KEY

PATH = "/hooks/mailgun"
KEY = "route-signing-key"
DISPATCHED = {"hard", "soft", "suppressed", "complaint", "unsubscribe", "error"}


class Handler:
    """Records each bounce; fails while ``broken``."""

    def __init__(self) -> None:
        self.seen: list[Bounce] = []
        self.broken = False

    def __call__(self, bounce: Bounce) -> None:
        if self.broken:
            raise RuntimeError("the handler's database is down")
        self.seen.append(bounce)


def downstream(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


def make_app(
    handler: Handler, store: Store | None = None, provider: Mailgun | None = None
) -> TestApp:
    routes = {PATH: provider or Mailgun(signing_key=KEY)}
    return TestApp(BounceMiddleware(downstream, routes=routes, handlers=[handler], store=store))


def send(app: TestApp, request: tuple[dict[str, str], bytes], status: int) -> TestResponse:
    headers, body = request
    response = app.do_request(
        TestRequest.blank(PATH, method="POST", headers=headers, body=body), status="*"
    )
    assert response.status_int == status, response.text
    return response


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(str(tmp_path / "bounces.sqlite3"))


@pytest.mark.parametrize("kind", sorted(MAILGUN_KINDS))
def test_every_sample_kind_is_dispatched_or_acknowledged(kind: str, handler: Handler) -> None:
    app = make_app(handler)
    send(app, sample_request(kind, email="ann@example.com", secret=KEY), 200)
    if kind in DISPATCHED:
        [bounce] = handler.seen
        assert bounce.kind == kind
        assert bounce.email == "ann@example.com"
    else:
        assert handler.seen == []


def test_the_published_vector_is_accepted_through_the_middleware(handler: Handler) -> None:
    body = json.dumps({"signature": PUBLISHED, "event-data": mailgun_event("complaint")}).encode()
    mailgun = Mailgun(signing_key=PUBLISHED_KEY, clock=lambda: 1661590700.0)
    send(make_app(handler, provider=mailgun), ({"Content-Type": "application/json"}, body), 200)
    assert [b.kind for b in handler.seen] == ["complaint"]


def unauthentic_requests() -> dict[str, tuple[dict[str, str], bytes]]:
    data = mailgun_event("hard")
    stale = str(int(time.time()) - 10 * 3600)
    headers, good = sign_request(data, signing_key=KEY)
    tampered = json.loads(good)
    tampered["signature"]["signature"] = recipe(KEY, "1", tampered["signature"]["token"])
    unsigned = json.dumps({"event-data": data}).encode()
    return {
        "wrong signature": (headers, json.dumps(tampered).encode()),
        "wrong key": sign_request(data, signing_key="someone-elses-key"),
        "stale timestamp": sign_request(data, signing_key=KEY, timestamp=stale),
        "no signature": (headers, unsigned),
        "not JSON": (headers, b"event=failed"),
    }


@pytest.mark.parametrize("case", sorted(unauthentic_requests()))
def test_unauthentic_requests_get_401_and_nothing_is_dispatched_or_kept(
    case: str, handler: Handler, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    request = unauthentic_requests()[case]
    response = send(make_app(handler, store), request, 401)
    assert response.text.strip() == "not authenticated"
    # The log says which check failed, never the signature block or the body.
    assert "mailgun webhook refused" in caplog.text
    block = json.loads(request[1]).get("signature", {}) if case != "not JSON" else {}
    assert all(value not in caplog.text for value in block.values())
    assert "ann@example.com" not in caplog.text and "alice@example.com" not in caplog.text
    assert handler.seen == []
    assert store.records() == [] and store.records(rejected=True) == []


def test_a_replayed_request_gets_401_and_runs_nothing(handler: Handler, store: Store) -> None:
    app = make_app(handler, store)
    request = sample_request("hard", email="ann@example.com", secret=KEY)
    send(app, request, 200)
    send(app, request, 401)
    assert len(handler.seen) == 1
    [record] = store.records()
    assert record.attempts == 1


def test_a_retry_after_a_handler_failure_is_accepted(handler: Handler, store: Store) -> None:
    app = make_app(handler, store)
    request = sample_request("hard", email="ann@example.com", secret=KEY)
    handler.broken = True
    send(app, request, 500)
    handler.broken = False
    send(app, request, 200)  # the same signature block: its token was forgotten
    assert [b.email for b in handler.seen] == ["ann@example.com"]
    send(app, request, 401)  # accepted once: now it is spent


def test_a_retry_after_a_503_is_accepted(handler: Handler, store: Store) -> None:
    mailgun = Mailgun(signing_key=KEY)
    app = make_app(handler, store, mailgun)
    request = sample_request("suppressed", email="ann@example.com", secret=KEY)
    [bounce] = Mailgun(signing_key=KEY).parse(webhook_request(PATH, request[1])).events
    running = store.claim(bounce, lease_seconds=60)  # another worker holds the event
    send(app, request, 503)
    store.release(running, finished=False)
    send(app, request, 200)
    assert [b.kind for b in handler.seen] == ["suppressed"]


def test_keys_rotate_through_the_middleware(handler: Handler) -> None:
    app = make_app(handler, provider=Mailgun(signing_key=["old-key", KEY]))
    send(app, sample_request("hard", email="a@example.com", secret="old-key"), 200)
    send(app, sample_request("hard", email="b@example.com", secret=KEY), 200)
    send(app, sample_request("hard", email="c@example.com", secret="retired-key"), 401)
    assert [b.email for b in handler.seen] == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(
    ("event_data", "reason"),
    [
        ("failed", "event-data must be an object"),
        ({"recipient": "ann@example.com"}, "event-data.event is missing"),
        (mailgun_event("hard", id=42), "event-data.id must be a string"),
    ],
)
def test_an_authentic_malformed_body_gets_406_and_is_kept(
    event_data: object, reason: str, handler: Handler, store: Store
) -> None:
    request = sign_request(event_data, signing_key=KEY)
    response = send(make_app(handler, store), request, 406)
    assert reason in response.text
    assert handler.seen == []
    [kept] = store.records(rejected=True)
    assert kept.provider == "mailgun"
    assert kept.body == request[1]
    assert reason in kept.reason


def test_without_a_store_a_malformed_body_still_gets_406(handler: Handler) -> None:
    send(make_app(handler), sign_request([], signing_key=KEY), 406)


def legacy_post(key: str) -> tuple[dict[str, str], bytes]:
    timestamp, token = str(int(time.time())), "e" * 50
    fields = {
        "event": "bounced",
        "recipient": "ann@example.com",
        "code": "550",
        "timestamp": timestamp,
        "token": token,
        "signature": recipe(key, timestamp, token),
    }
    return {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(fields).encode()


def test_an_authentic_legacy_post_gets_406_with_advice_and_is_kept(
    handler: Handler, store: Store
) -> None:
    response = send(make_app(handler, store), legacy_post(KEY), 406)
    assert "legacy Mailgun webhook" in response.text
    assert handler.seen == []
    [kept] = store.records(rejected=True)
    assert "replace it with a current webhook" in kept.reason


def test_a_forged_legacy_post_gets_401_and_is_not_kept(handler: Handler, store: Store) -> None:
    send(make_app(handler, store), legacy_post("forger"), 401)
    assert store.records(rejected=True) == []


def test_basic_credentials_are_checked_before_the_body(handler: Handler) -> None:
    mailgun = Mailgun(signing_key=KEY, credentials=["mailgun:a-long-enough-password"])
    app = make_app(handler, provider=mailgun)
    request = sample_request("hard", email="ann@example.com", secret=KEY)
    response = send(app, request, 401)
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="bounce-middleware"')
    headers = {
        **request[0],
        "Authorization": basic_auth_header("mailgun", "a-long-enough-password"),
    }
    send(app, (headers, request[1]), 200)
    assert len(handler.seen) == 1


def test_other_paths_pass_through(handler: Handler) -> None:
    assert make_app(handler).get("/hooks/mailgun/other").text == "the application"


def test_samples_refuse_an_unknown_kind_and_a_missing_key() -> None:
    with pytest.raises(ValueError, match="unknown Mailgun sample kind 'bounce'"):
        mailgun_event("bounce")
    with pytest.raises(ValueError, match="signing key"):
        sample_request("hard", email="ann@example.com", secret=None)


def test_sample_overrides_spell_hyphens_with_underscores() -> None:
    data = mailgun_event("hard", email="x@example.org", user_variables={"a": "b"}, tags=[])
    assert data["user-variables"] == {"a": "b"}
    assert data["tags"] == []
    assert data["recipient"] == "x@example.org"
    assert data["recipient-domain"] == "example.org"
    assert mailgun_event("hard")["id"] != mailgun_event("hard")["id"]


def test_sign_request_uses_the_given_timestamp_and_token() -> None:
    headers, body = sign_request({"event": "opened"}, signing_key=KEY, timestamp=1700000000)
    signature = json.loads(body)["signature"]
    assert headers == {"Content-Type": "application/json"}
    assert signature["timestamp"] == "1700000000"
    assert len(signature["token"]) == 50
    assert signature["signature"] == recipe(KEY, "1700000000", signature["token"])
    _, again = sign_request({}, signing_key=KEY.encode(), timestamp="1700000000", token="t")
    assert json.loads(again)["signature"]["signature"] == recipe(KEY, "1700000000", "t")
