"""Both fronts behind one client: the same request to the WSGI and the ASGI middleware.

``make(front, **options)`` builds ``bounce_middleware.BounceMiddleware``
(``"wsgi"``) or ``bounce_middleware.asgi.BounceMiddleware`` (``"asgi"``;
``"asgi-inline"`` with ``threads=False``) around a downstream app that
answers 418, with the same options, and returns a :class:`Client` whose
:meth:`Client.request` posts through the front as a server would: a real
WSGI call, or a real ASGI call (``receive`` giving the body in chunks of
``chunk_size``, then ``http.disconnect``). Tests parametrised with
:data:`FRONTS` run every case on each.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webob import Request

from bounce_middleware import BounceMiddleware as WSGIMiddleware
from bounce_middleware.asgi import BounceMiddleware as ASGIMiddleware
from bounce_middleware.asgi import Message, Receive, Scope, Send
from tests.conftest import load_payload

#: "asgi-inline" is the ASGI front with ``threads=False``: the receiver's work on the loop.
FRONTS = ("wsgi", "asgi", "asgi-inline")

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "s3cret:with:colons-ünïcode"

#: The status table of DESIGN.md for a Postmark route with a 64 KiB cap: body, status, reason.
STATUS_TABLE: list[tuple[str, bytes, int, str]] = [
    ("not-json", b"not json", 400, "body is not valid JSON"),
    ("not-object", b"[]", 400, "body is a JSON array; expected an object"),
    ("too-deep", b"[" * 20_000 + b"]" * 20_000, 400, "body is nested too deeply"),
    ("too-large", b" " * (64 * 1024 + 1), 413, "body is larger than 65536 bytes"),
    ("missing-field", b'{"Type": "HardBounce", "Email": "a@b.c"}', 400, "required field ID"),
    ("inbound", json.dumps(load_payload("inbound")).encode(), 400, "inbound e-mail"),
    ("delivery", json.dumps(load_payload("delivery")).encode(), 200, "ignored: Delivery"),
    ("open", json.dumps(load_payload("open")).encode(), 200, "ignored: Open"),
    ("click", json.dumps(load_payload("click")).encode(), 200, "ignored: Click"),
    ("bounce", json.dumps(load_payload("bounce")).encode(), 200, "accepted"),
    ("legacy", json.dumps(load_payload("legacy_2010")).encode(), 200, "accepted"),
    ("complaint", json.dumps(load_payload("spam_complaint")).encode(), 200, "accepted"),
    ("subscription", json.dumps(load_payload("subscription_change")).encode(), 200, "accepted"),
]


@dataclass
class Reply:
    """What the client got: status, headers by lower-case name, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class Downstream:
    """The wrapped application (WSGI or ASGI): answers 418 and records the paths it saw."""

    paths: list[str] = field(default_factory=list)

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.paths.append(environ["PATH_INFO"])
        start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
        return [b"downstream"]

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope.get("path", scope["type"]))
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"downstream"})


@dataclass
class Client:
    """One front around a :class:`Downstream`, and a way to send it requests."""

    front: str
    middleware: Any
    downstream: Downstream
    #: How many times the last ASGI request's ``receive()`` was awaited.
    receives: int = 0

    def request(
        self,
        method: str = "POST",
        path: str = PATH,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        content_length: str | None = None,
        chunk_size: int | None = None,
    ) -> Reply:
        """Send one request; ``content_length`` "" sends none, another string that value."""
        if self.front == "wsgi":
            return self._wsgi(method, path, body, headers or {}, content_length)
        return asyncio.run(
            self._asgi(method, path, body, headers or {}, content_length, chunk_size)
        )

    def _wsgi(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        content_length: str | None,
    ) -> Reply:
        environ = Request.blank(path, method=method, headers=dict(headers), body=body).environ
        if content_length == "":
            # No length: a chunked upload, whose end the server marks (gunicorn does).
            environ.pop("CONTENT_LENGTH", None)
            environ["wsgi.input_terminated"] = True
        elif content_length is not None:
            environ["CONTENT_LENGTH"] = content_length
        started: list[Any] = []
        chunks = self.middleware(environ, lambda status, hl: started.append((status, hl)))
        data = b"".join(chunks)
        status, headerlist = started[0]
        return Reply(int(status.split()[0]), {n.lower(): v for n, v in headerlist}, data)

    async def _asgi(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        content_length: str | None,
        chunk_size: int | None,
    ) -> Reply:
        raw = [(k.lower().encode("latin-1"), wire(v)) for k, v in headers.items()]
        if content_length is None:
            raw.append((b"content-length", str(len(body)).encode()))
        elif content_length != "":
            raw.append((b"content-length", wire(content_length)))
            if content_length.isascii() and content_length.isdigit() and len(content_length) < 100:
                # The server frames the body by its declared length.
                body = body[: int(content_length)]
        messages = list(body_messages(body, chunk_size))
        sent: list[Message] = []
        self.receives = 0

        async def receive() -> Message:
            self.receives += 1
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        path, _, query = path.partition("?")
        scope = http_scope(method, path, raw, query_string=query.encode("latin-1"))
        await self.middleware(scope, receive, send)
        start = sent[0]
        answer_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
        data = b"".join(m.get("body", b"") for m in sent[1:])
        return Reply(start["status"], answer_headers, data)


def wire(value: str) -> bytes:
    """A header value as a client puts it on the wire: latin-1, or else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def body_messages(body: bytes, chunk_size: int | None) -> Iterable[Message]:
    """``http.request`` messages carrying ``body``, in chunks of ``chunk_size`` if given."""
    if chunk_size is None or not body:
        yield {"type": "http.request", "body": body, "more_body": False}
        return
    for start in range(0, len(body), chunk_size):
        last = start + chunk_size >= len(body)
        yield {
            "type": "http.request",
            "body": body[start : start + chunk_size],
            "more_body": not last,
        }


def http_scope(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    root_path: str = "",
    query_string: bytes = b"",
    scheme: str = "http",
    server: tuple[str, int | None] | None = ("testserver", 80),
) -> Scope:
    """An ``http`` scope as uvicorn builds one."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": query_string,
        "headers": headers,
        "server": server,
        "client": ("127.0.0.1", 50000),
    }


def make(front: str, **options: Any) -> Client:
    """The ``front`` middleware around a fresh :class:`Downstream`, built with ``options``."""
    downstream = Downstream()
    if front == "wsgi":
        return Client(front, WSGIMiddleware(downstream.wsgi, **options), downstream)
    if front == "asgi-inline":
        options["threads"] = False
    return Client(front, ASGIMiddleware(downstream.asgi, **options), downstream)
