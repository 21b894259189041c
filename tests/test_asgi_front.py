"""The ASGI front itself: pass-through, the body from receive(), headers and URL."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from bounce_middleware import Bounce
from bounce_middleware.asgi import (
    BounceMiddleware,
    Message,
    request_headers,
    request_url,
    route_path,
)
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.fronts import PASSWORD, PATH, USER, Downstream, http_scope

AUTH = [(k.lower().encode(), v.encode()) for k, v in auth_headers(USER, PASSWORD).items()]


def bounce_body(**fields: Any) -> bytes:
    return json.dumps(postmark_bounce(**fields)).encode()


def middleware(*handlers: Any, **options: Any) -> tuple[BounceMiddleware, Downstream]:
    downstream = Downstream()
    options.setdefault("max_body_size", 1000)
    app = BounceMiddleware(
        downstream.asgi,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=handlers,
        **options,
    )
    return app, downstream


class Exchange:
    """One ASGI call: the messages ``receive`` gives, and what was sent back."""

    def __init__(self, *messages: Message) -> None:
        self.messages = list(messages)
        self.received = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.received += 1
        if self.messages:
            return self.messages.pop(0)
        await asyncio.sleep(3600)  # a server's receive() waits for the client
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def run(self, app: Any, scope: Any) -> Exchange:
        asyncio.run(app(scope, self.receive, self.send))
        return self

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])


def chunk(body: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


# -- pass-through ---------------------------------------------------------------------


def test_lifespan_and_websocket_scopes_pass_through_untouched() -> None:
    app, downstream = middleware()
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}}
    websocket = {**http_scope("GET", PATH, AUTH), "type": "websocket"}
    Exchange().run(app, lifespan)
    done = Exchange().run(app, websocket)
    assert downstream.paths == ["lifespan", PATH]
    assert done.sent == [] and done.received == 0


def test_pass_through_gives_the_app_the_same_scope_and_callables() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    wrapped = BounceMiddleware(app, path=PATH, credentials=[f"{USER}:{PASSWORD}"])
    scope = http_scope("POST", "/elsewhere", AUTH)
    exchange = Exchange()
    asyncio.run(wrapped(scope, exchange.receive, exchange.send))
    [(got_scope, got_receive, got_send)] = seen
    assert got_scope is scope and got_receive == exchange.receive and got_send == exchange.send


@pytest.mark.parametrize(
    ("path", "root_path", "routed"),
    [
        ("/app/postmark/bounce", "/app", True),  # uvicorn >= 0.26, Starlette's Mount
        ("/postmark/bounce", "/app", True),  # servers that leave the mount point out
        ("/application/postmark/bounce", "/app", False),
        ("/app", "/app", False),
        ("/app/other", "/app", False),
    ],
)
def test_a_route_under_a_root_path(path: str, root_path: str, routed: bool) -> None:
    received: list[Bounce] = []
    app, downstream = middleware(received.append)
    scope = http_scope("POST", path, AUTH, root_path=root_path)
    exchange = Exchange(chunk(bounce_body())).run(app, scope)
    assert exchange.status == (200 if routed else 418)
    assert len(received) == int(routed)
    if routed:
        assert route_path({"path": path, "root_path": root_path}) == PATH


# -- the body ---------------------------------------------------------------------


def test_a_declared_length_over_the_cap_receives_nothing() -> None:
    app, _ = middleware()
    scope = http_scope("POST", PATH, [*AUTH, (b"content-length", b"1001")])
    exchange = Exchange(chunk(b"x" * 1001)).run(app, scope)
    assert (exchange.status, exchange.received) == (413, 0)
    assert exchange.sent[1]["body"] == b"body is larger than 1000 bytes\n"


def test_a_chunked_body_over_the_cap_stops_at_the_chunk_that_crosses_it() -> None:
    received: list[Bounce] = []
    app, _ = middleware(received.append)
    chunks = [chunk(b"x" * 400, more=True) for _ in range(10)]
    exchange = Exchange(*chunks).run(app, http_scope("POST", PATH, AUTH))
    # 400 + 400 + 400 > 1000: the third message is the last one received.
    assert (exchange.status, exchange.received, received) == (413, 3, [])


def test_a_body_at_the_cap_is_read() -> None:
    app, _ = middleware(max_body_size=len(bounce_body()))
    body = bounce_body()
    exchange = Exchange(chunk(body[:10], more=True), chunk(body[10:])).run(
        app, http_scope("POST", PATH, AUTH)
    )
    assert exchange.status == 200


def test_unauthenticated_requests_are_refused_before_the_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = middleware()
    exchange = Exchange(chunk(bounce_body())).run(app, http_scope("POST", PATH, []))
    assert (exchange.status, exchange.received) == (401, 0)


@pytest.mark.parametrize("after", [0, 1], ids=["at-once", "midway"])
def test_a_client_that_leaves_gets_no_answer_and_nothing_is_dispatched(
    after: int, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[Bounce] = []
    body = bounce_body()
    messages = [chunk(body[:20], more=True)][:after]
    app, _ = middleware(received.append)
    with caplog.at_level(logging.WARNING, "bounce_middleware"):
        exchange = Exchange(*messages, {"type": "http.disconnect"}).run(
            app, http_scope("POST", PATH, AUTH)
        )
    assert (exchange.sent, received) == ([], [])
    assert [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()] == [
        "bounce webhook: the client left before its body was read; not answered"
    ]


class FailingReceive(Exchange):
    """A server whose ``receive()`` raises ``error`` once the given messages are used up."""

    def __init__(self, error: Exception, *messages: Message) -> None:
        super().__init__(*messages)
        self.error = error

    async def receive(self) -> Message:
        self.received += 1
        if self.messages:
            return self.messages.pop(0)
        raise self.error


@pytest.mark.parametrize("after", [0, 1], ids=["at-once", "midway"])
@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_a_receive_that_raises_is_answered_400_as_the_wsgi_front_answers_it(
    after: int, error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    received: list[Bounce] = []
    app, downstream = middleware(received.append)
    body = bounce_body()
    messages = [chunk(body[:20], more=True)][:after]
    failing = FailingReceive(error("peer 203.0.113.9 sent garbage"), *messages)
    with caplog.at_level(logging.WARNING, "bounce_middleware"):
        exchange = failing.run(app, http_scope("POST", PATH, AUTH))
    assert (exchange.status, exchange.sent[1]["body"]) == (
        400,
        b"could not read the request body\n",
    )
    assert (received, downstream.paths) == ([], [])
    assert [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()] == [
        f"bounce webhook: could not read the request body ({error.__name__}) -> 400"
    ]
    assert "203.0.113.9" not in caplog.text  # only the class: the message may hold anything


@pytest.mark.parametrize("after", [0, 1], ids=["at-once", "midway"])
def test_a_receive_that_raises_oserror_is_a_client_gone_and_not_answered(
    after: int, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[Bounce] = []
    app, _ = middleware(received.append)
    messages = [chunk(bounce_body()[:20], more=True)][:after]
    failing = FailingReceive(ConnectionResetError("reset by 203.0.113.9"), *messages)
    with caplog.at_level(logging.WARNING, "bounce_middleware"):
        exchange = failing.run(app, http_scope("POST", PATH, AUTH))
    assert (exchange.sent, received) == ([], [])
    assert [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()] == [
        "bounce webhook: the connection failed before its body was read "
        "(ConnectionResetError); not answered"
    ]


def test_a_send_on_a_closed_connection_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    received: list[Bounce] = []
    app, _ = middleware(received.append)

    async def gone(message: Message) -> None:
        raise ConnectionResetError("the client went away")

    exchange = Exchange(chunk(bounce_body()))
    with caplog.at_level(logging.WARNING, "bounce_middleware"):
        asyncio.run(app(http_scope("POST", PATH, AUTH), exchange.receive, gone))
    assert len(received) == 1  # done, and recorded: the provider's retry finds it so
    assert "the client left before the 200 answer (ConnectionResetError)" in caplog.text


# -- headers and URL ------------------------------------------------------------------


def test_headers_are_lower_cased_latin_1_and_repeats_joined_as_wsgi_servers_do() -> None:
    raw = [(b"X-Token", b"a"), (b"x-token", b"b"), (b"X-Name", "caf\u00e9".encode("latin-1"))]
    assert request_headers(raw) == {"x-token": "a,b", "x-name": "caf\u00e9"}


@pytest.mark.parametrize(
    ("scope", "host", "url"),
    [
        ({"scheme": "https", "server": ("example.com", 443)}, None, "https://example.com/p"),
        ({"scheme": "https", "server": ("example.com", 8443)}, None, "https://example.com:8443/p"),
        ({"scheme": "http", "server": ("example.com", 80)}, None, "http://example.com/p"),
        (
            {"scheme": "http", "server": ("example.com", 80)},
            "h.example.com",
            "http://h.example.com/p",
        ),
        ({"scheme": "http", "server": ("/tmp/sock", None)}, None, "http:///tmp/sock/p"),
        ({"server": None}, None, "http:///p"),
        ({"root_path": "/app"}, "h", "http://h/app/p"),
        ({"root_path": "/app", "path": "/app/p"}, "h", "http://h/app/p"),
        ({"query_string": b"a=1&b=%20"}, "h", "http://h/p?a=1&b=%20"),
    ],
)
def test_the_url_is_rebuilt_from_the_scope(
    scope: dict[str, Any], host: str | None, url: str
) -> None:
    headers = {} if host is None else {"host": host}
    assert request_url({"path": "/p", **scope}, headers) == url


def test_from_settings_reads_the_same_keys() -> None:
    downstream = Downstream()
    app = BounceMiddleware.from_settings(
        downstream.asgi,
        {"bounce.routes": f"{PATH} postmark", "bounce.postmark.credentials": "u:long-pass-word"},
    )
    assert list(app.routes) == [PATH] and app.max_body_size == 1024 * 1024


def test_the_options_are_the_wsgi_middlewares() -> None:
    # A new WSGI option must reach the ASGI front too; threads= and max_threads= are the
    # ASGI front's own.
    import inspect

    from bounce_middleware import BounceMiddleware as WSGIMiddleware

    def options(cls: type) -> dict[str, Any]:
        parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        return {n: p.default for n, p in parameters.items() if n not in ("self", "app")}

    asgi = options(BounceMiddleware)
    assert asgi.pop("threads") is True
    assert asgi.pop("max_threads") is None
    assert asgi == options(WSGIMiddleware)
    assert set(dir(WSGIMiddleware)) - set(dir(BounceMiddleware)) == {"handle"}  # WebOb
