"""The WSGI front: headers read from the environ on demand, Basic auth checked once."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from bounce_middleware import BounceMiddleware
from bounce_middleware.auth import BasicAuth
from bounce_middleware.middleware import EnvironHeaders, webhook_request
from bounce_middleware.testing import auth_headers, postmark_bounce

PASSWORD = "tests-only-webhook-password"


def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the site"]


def environ(body: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/hooks/postmark",
        "SCRIPT_NAME": "/app",
        "QUERY_STRING": "a=1",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "8443",
        "wsgi.url_scheme": "https",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def test_headers_are_read_by_lower_case_name() -> None:
    headers = EnvironHeaders(
        environ(b"{}", HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP="1600112502", HTTP_BAD=3)
    )
    assert headers["x-twilio-email-event-webhook-timestamp"] == "1600112502"
    assert headers.get("content-type") == "application/json"
    assert headers.get("content-length") == "2"
    assert headers.get("authorization") is None
    assert "bad" not in headers  # a non-string environ value is no header
    with pytest.raises(KeyError):
        headers["authorization"]
    assert sorted(headers) == [
        "content-length",
        "content-type",
        "x-twilio-email-event-webhook-timestamp",
    ]
    assert len(headers) == 3


def test_the_request_url_is_the_one_the_provider_called() -> None:
    request = webhook_request(environ(b""), b"")
    assert request.url == "https://example.com:8443/app/hooks/postmark?a=1"
    with_host = webhook_request(environ(b"", HTTP_HOST="hooks.example.com"), b"")
    assert with_host.url == "https://hooks.example.com/app/hooks/postmark?a=1"
    assert request.header("Content-Type") == "application/json"


def test_basic_credentials_are_checked_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Checked before the body is read (an unauthenticated client never makes the server
    # read one), and not again once the body is there.
    calls: list[str | None] = []
    real = BasicAuth.check

    def counting(self: BasicAuth, header: str | None) -> bool:
        calls.append(header)
        return real(self, header)

    monkeypatch.setattr(BasicAuth, "check", counting)
    received: list[object] = []
    middleware = BounceMiddleware(
        site,
        path="/hooks/postmark",
        credentials=[f"postmark:{PASSWORD}"],
        handlers=[received.append],
    )
    body = json.dumps(postmark_bounce()).encode()
    authorization = auth_headers("postmark", PASSWORD)["Authorization"]
    answer = middleware.process(environ(body, HTTP_AUTHORIZATION=authorization))
    assert (answer.status, len(received), len(calls)) == (200, 1, 1)
    # The sans-IO core, called on its own, checks them itself.
    request = webhook_request(environ(body, HTTP_AUTHORIZATION="Basic d3Jvbmc6d3Jvbmc="), body)
    assert middleware.answer(request).status == 401
    assert len(calls) == 2 and len(received) == 1


def test_acknowledged_names_may_hold_underscores_and_dots_and_nothing_stranger() -> None:
    from bounce_middleware.providers import SendGrid
    from bounce_middleware.request import post
    from bounce_middleware.testing import SENDGRID_TEST_PUBLIC_KEY, sign_sendgrid_request

    middleware = BounceMiddleware(
        site, routes={"/sg": SendGrid(public_key=SENDGRID_TEST_PUBLIC_KEY)}
    )
    events = [
        {"event": "account_status_change"},
        {"event": "email.delivered"},
        {"event": "odd\nname"},
        {"event": "odd name"},
    ]
    headers, body = sign_sendgrid_request(events)
    answer = middleware.answer(post("/sg", body, headers))
    assert answer.status == 200
    assert answer.reason == (
        "ignored: account_status_change, email.delivered, unrecognised records are not bounces"
    )


def test_a_refused_event_without_a_store_is_not_said_to_be_kept() -> None:
    from bounce_middleware.providers import SendGrid
    from bounce_middleware.request import post
    from bounce_middleware.testing import SENDGRID_TEST_PUBLIC_KEY, sign_sendgrid_request

    middleware = BounceMiddleware(
        site, routes={"/sg": SendGrid(public_key=SENDGRID_TEST_PUBLIC_KEY)}
    )
    headers, body = sign_sendgrid_request([{"event": "bounce"}])  # no email: refused alone
    answer = middleware.answer(post("/sg", body, headers))
    assert (answer.status, answer.reason) == (200, "1 events refused (not kept: no store)")


class _HeadChecked:
    """A provider that answers a HEAD check, as Mandrill's webhook setup sends one."""

    name: str = "headcheck"
    methods: frozenset[str] = frozenset({"POST", "HEAD"})
    refuse_status: int = 400
    retry_status: int | None = None

    def authenticate(self, request: Any) -> None:
        pass

    def parse(self, request: Any) -> Any:
        from bounce_middleware.providers import Parsed

        return Parsed(handshake="webhook URL check")


def test_a_head_answer_has_the_headers_and_no_body() -> None:
    middleware = BounceMiddleware(site, routes={"/hooks/postmark": _HeadChecked()})
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        seen.append((status, headers))
        return lambda data: None

    head = middleware(environ(b"", REQUEST_METHOD="HEAD"), start_response)
    assert list(head) == []
    assert seen[0][0] == "200 OK"
    assert ("Content-Length", str(len(b"webhook URL check\n"))) in seen[0][1]
    posted = middleware(environ(b""), start_response)
    assert list(posted) == [b"webhook URL check\n"]
