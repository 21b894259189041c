"""The ASGI front: webhook routes answered by the receiver, everything else passed through.

The same options, routes, providers, stores and handlers as the WSGI
:class:`bounce_middleware.BounceMiddleware`, on the same sans-IO
:class:`~bounce_middleware.receiver.Receiver`::

    from bounce_middleware.asgi import BounceMiddleware

    app.add_middleware(BounceMiddleware, routes={"/hooks/postmark": Postmark(...)},
                       handlers=[on_bounce], store=SQLiteStore("var/bounces.sqlite3"))

The body-less checks (HTTP Basic) run on the event loop, before the body is
read; the receiver's work (authentication, parsing, the store, the handlers)
runs in a worker thread, so a store or handler never blocks the loop (see
:mod:`bounce_middleware.asgi_bridge` for ``async def`` handlers and stores).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from .answer import Answer
from .asgi_bridge import bridged_handler, bridged_store, given_store, run_in_thread
from .body import BodyTooLarge, read_body
from .errors import PayloadError
from .handlers import Handler, HandlerFunc, TransactionalHandlerFunc
from .middleware import shorthand_routes
from .model import Bounce, BounceKind
from .providers import Provider
from .receiver import DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRY_AFTER, Receiver
from .request import WebhookRequest
from .store import DEFAULT_LEASE_SECONDS, Store
from .text import loggable

__all__ = ["ASGIApp", "BounceMiddleware", "Receive", "Scope", "Send"]

# The ASGI 3 callables, typed as Starlette types them (so add_middleware type-checks).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("bounce_middleware")

_NO_INPUT = io.BytesIO(b"")


class BounceMiddleware:
    """Wrap an ASGI 3 app and answer e-mail providers' webhooks on their routes.

    The options are the WSGI middleware's (``routes``, or version 1's
    ``path``/``credentials``/``realm``; ``handlers``, ``store``,
    ``max_body_size``, ``retry_after``, ``lease_seconds``, ``scope``).
    Lifespan and websocket scopes, and HTTP requests to any other path, go
    straight to ``app``. Handlers may be ``async def`` (awaited on the event
    loop); a store's methods may be too.
    """

    __slots__ = ("app", "routes", "receiver", "_too_large")

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, Provider] | None = None,
        path: str | None = None,
        credentials: Iterable[str] | None = None,
        handlers: Iterable[HandlerFunc | TransactionalHandlerFunc | Handler] = (),
        store: Store | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        realm: str = "bounce-middleware",
        retry_after: int = DEFAULT_RETRY_AFTER,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        scope: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        self.app = app
        self.receiver = Receiver(
            shorthand_routes(routes, path, credentials, realm),
            handlers=[bridged_handler(h) for h in handlers],
            store=bridged_store(store),
            max_body_size=max_body_size,
            retry_after=retry_after,
            lease_seconds=lease_seconds,
            scope=scope,
        )
        # The receiver's own dict: one lookup decides pass-through.
        self.routes = self.receiver.routes
        self._too_large = Answer(413, f"body is larger than {max_body_size} bytes")

    @classmethod
    def from_settings(
        cls, app: ASGIApp, settings: Mapping[str, Any], prefix: str = "bounce."
    ) -> BounceMiddleware:
        """Build the middleware from a flat mapping (see ``settings.parse_settings``)."""
        from .settings import parse_settings

        return cls(app, **parse_settings(settings, prefix))

    @property
    def store(self) -> Store | None:
        """The store events are recorded in, as given (None: handlers run without records)."""
        return given_store(self.receiver.store)  # type: ignore[no-any-return]

    @store.setter
    def store(self, store: Store | None) -> None:
        self.receiver.store = bridged_store(store)

    @property
    def handlers(self) -> list[Handler]:
        """The registered handlers, in the order they run."""
        return self.receiver.handlers

    @property
    def max_body_size(self) -> int:
        """The largest body read, in bytes; a larger one is answered 413."""
        return self.receiver.max_body_size

    @property
    def providers(self) -> dict[str, Provider]:
        """The configured providers by name."""
        return self.receiver.providers

    def add_handler(
        self,
        func: HandlerFunc | TransactionalHandlerFunc | Handler,
        *,
        kinds: Iterable[BounceKind | str] | None = None,
        name: str | None = None,
    ) -> Handler:
        """Register a handler (``async def`` or not), optionally for some kinds only."""
        return self.receiver.add_handler(bridged_handler(func, kinds=kinds, name=name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path of every request and lifespan event: a type check, one dict lookup.
        if scope["type"] != "http" or (
            scope["path"] not in self.routes and not scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path not in self.routes:
            await self.app(scope, receive, send)
            return
        answer = await self.process(scope, path, receive)
        if answer is not None:
            await send_answer(answer, send, head=scope["method"] == "HEAD")

    async def process(self, scope: Scope, path: str, receive: Receive) -> Answer | None:
        """Read one route's request from ``receive`` and answer it; None if the client left."""
        headers = request_headers(scope["headers"])
        request = WebhookRequest(scope["method"], path, headers, b"", request_url(scope, headers))
        # Body-less checks (HTTP Basic, constant time, no I/O) on the loop: an
        # unauthenticated client never makes the server read a body, or take a thread.
        early = self.receiver.precheck(request)
        if early is not None:
            return early
        body = await self._read_body(headers.get("content-length"), receive)
        if not isinstance(body, bytes):
            return body
        full = WebhookRequest(request.method, path, headers, body, request.url, request.memo)
        return await run_in_thread(self.receiver.answer, full)

    async def _read_body(self, length: str | None, receive: Receive) -> bytes | Answer | None:
        limit = self.receiver.max_body_size
        if length is not None:
            try:
                # The WSGI front's own check of the header, on an empty input.
                read_body({"CONTENT_LENGTH": length, "wsgi.input": _NO_INPUT}, limit)
            except BodyTooLarge:
                return self._refuse_too_large(limit)
            except PayloadError as exc:
                logger.warning("bounce webhook refused: %s -> 400", loggable(exc.reason))
                return Answer(400, exc.reason)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    # Nothing more is received: the server discards the rest.
                    return self._refuse_too_large(limit)
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
            elif kind == "http.disconnect":
                logger.warning(
                    "bounce webhook: the client left before its body was read; not answered"
                )
                return None

    def _refuse_too_large(self, limit: int) -> Answer:
        logger.warning("bounce webhook refused: body over %d bytes -> 413", limit)
        return self._too_large

    def answer(self, request: WebhookRequest) -> Answer:
        """Answer a request whose body was read (sans-IO, synchronous; see ``Receiver``)."""
        return self.receiver.answer(request)

    def dispatch(self, events: Bounce | tuple[Bounce, ...]) -> Answer:
        """Run the handlers for parsed events (through the store, if any) and answer.

        Synchronous, as ``bounce-middleware replay`` calls it; ``async def``
        handlers run in an event loop of their own there.
        """
        return self.receiver.dispatch(events)


def route_path(scope: Scope) -> str:
    """The path a route matches: ``path`` without the ``root_path`` the app is mounted at.

    Servers put the mount point in front of ``path`` (uvicorn since 0.26;
    Starlette's ``Mount``) or leave it out (older ones): both match.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    return path[len(root) :] if root and _under(path, root) else path


def _under(path: str, root: str) -> bool:
    return path.startswith(root) and path[len(root) : len(root) + 1] == "/"


def request_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers by lower-case name, latin-1 decoded.

    A repeated header is joined with ``,`` as WSGI servers (gunicorn, asgiref's
    bridge) join them, so both fronts hand providers the same value.
    """
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = headers.get(key)
        headers[key] = text if previous is None else f"{previous},{text}"
    return headers


def request_url(scope: Scope, headers: Mapping[str, str]) -> str:
    """The URL the provider called (Mandrill signs it), rebuilt as PEP 3333 does."""
    scheme: str = scope.get("scheme") or "http"
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = ""
        if server is not None:
            name, port = server[0], server[1]
            host = (
                name
                if port is None or port == (443 if scheme == "https" else 80)
                else (f"{name}:{port}")
            )
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and not _under(path, root):
        path = root + path
    query: bytes = scope.get("query_string") or b""
    url = f"{scheme}://{host}{path}"
    return f"{url}?{query.decode('latin-1')}" if query else url


async def send_answer(answer: Answer, send: Send, *, head: bool = False) -> None:
    """Send an :class:`Answer` as ``http.response.start`` and ``.body`` (no body for HEAD)."""
    headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.headerlist()]
    try:
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else answer.body})
    except OSError as exc:
        # ASGI: sending on a closed connection raises a subclass of OSError. The
        # answer is settled in the store already; the provider's retry finds it done.
        logger.warning(
            "bounce webhook: the client left before the %d answer (%s)",
            answer.status,
            type(exc).__name__,
        )
