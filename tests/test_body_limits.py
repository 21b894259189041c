"""Each route reads at most its limit: the configured one, else its provider's own."""

from __future__ import annotations

import io
from typing import Any

from bounce_middleware import BounceMiddleware
from bounce_middleware.providers import Mandrill, Postmark
from bounce_middleware.receiver import DEFAULT_MAX_BODY_SIZE
from bounce_middleware.samples.mandrill import mandrill_event, sign_request
from bounce_middleware.testing import auth_headers

KEY = "body-limit-test-webhook-key"
URL = "http://hooks.example.com/mandrill"


def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"site"]


def post(app: BounceMiddleware, path: str, headers: dict[str, str], body: bytes) -> str:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "hooks.example.com",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }
    if "HTTP_CONTENT_TYPE" in environ:
        environ["CONTENT_TYPE"] = environ.pop("HTTP_CONTENT_TYPE")
    statuses: list[str] = []
    app(environ, lambda status, headers, *exc: statuses.append(status))  # type: ignore[arg-type]
    return statuses[0]


def full_batch() -> tuple[dict[str, str], bytes]:
    """1,000 bounces as Mandrill form-encodes them: well over the default limit."""
    # With the SMTP transcript Mandrill sends for a bounce after deferrals.
    transcript = [
        {"ts": 1700000000 + n, "type": "sent", "diag": "451 4.3.5 Temporary system problem"}
        for n in range(3)
    ]
    events = [
        mandrill_event("hard", email=f"user{n}@example.com", msg={"smtp_events": transcript})
        for n in range(1000)
    ]
    headers, body = sign_request(events, key=KEY, url=URL)
    assert len(body) > DEFAULT_MAX_BODY_SIZE
    return headers, body


def test_a_full_mandrill_batch_is_read_on_its_route_and_not_on_others() -> None:
    seen: list[object] = []
    app = BounceMiddleware(
        site,
        routes={
            "/mandrill": Mandrill(key=KEY, url=URL),
            "/postmark": Postmark(credentials=["postmark:a-long-password-0123"]),
        },
        handlers=[seen.append],
    )
    assert app.receiver.body_limits == {
        "/mandrill": Mandrill.max_body_size,
        "/postmark": DEFAULT_MAX_BODY_SIZE,
    }
    headers, body = full_batch()
    assert post(app, "/mandrill", headers, body) == "200 OK"
    assert len(seen) == 1000
    # Credentials are checked before the body: send good ones to reach the limit.
    credentials = auth_headers("postmark", "a-long-password-0123")
    assert post(app, "/postmark", credentials, body) == "413 Request Entity Too Large"


def test_a_configured_limit_applies_to_every_route() -> None:
    app = BounceMiddleware(
        site, routes={"/mandrill": Mandrill(key=KEY, url=URL)}, max_body_size=4096
    )
    assert app.max_body_size == 4096
    headers, body = full_batch()
    assert post(app, "/mandrill", headers, body) == "413 Request Entity Too Large"
