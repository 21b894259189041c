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
With ``threads=False`` it runs on the loop instead: for handlers that only
hand the event on (``queue.put_nowait``) and no store (or a ``MemoryStore``),
where a thread's round trip (100-200 µs) would cost several times the work
itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .answer import UNREADABLE_BODY, Answer
from .asgi_bridge import (
    DEFAULT_MAX_THREADS,
    AsyncHandler,
    AsyncStoreBridge,
    WorkerThreads,
    bridged_handler,
    bridged_store,
    given_store,
)
from .asgi_http import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    request_headers,
    request_url,
    route_path,
    send_answer,
)
from .body import BodyTooLarge, declared_length
from .errors import ConfigurationError, PayloadError
from .handlers import Handler, HandlerFunc, TransactionalHandlerFunc
from .handoff import Handoff
from .memory_store import MemoryStore
from .middleware import shorthand_routes
from .model import Bounce, BounceKind
from .providers import Provider
from .receiver import DEFAULT_RETRY_AFTER, Receiver
from .request import WebhookRequest
from .store import DEFAULT_LEASE_SECONDS, Store
from .text import loggable

__all__ = [
    "ASGIApp",
    "BounceMiddleware",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "request_headers",
    "request_url",
    "route_path",
    "send_answer",
]

logger = logging.getLogger("bounce_middleware")


class BounceMiddleware:
    """Wrap an ASGI 3 app and answer e-mail providers' webhooks on their routes.

    The options are the WSGI middleware's (``routes``, or version 1's
    ``path``/``credentials``/``realm``; ``handlers``, ``store``,
    ``max_body_size``, ``retry_after``, ``lease_seconds``, ``scope``,
    ``handoff``).
    Lifespan and websocket scopes, and HTTP requests to any other path, go
    straight to ``app``. Handlers may be ``async def`` (awaited on the event
    loop); a store's methods may be too. The receiver's work runs in the
    middleware's own pool of ``max_threads`` worker threads (default
    ``DEFAULT_MAX_THREADS``), never the loop's default executor.
    ``threads=False`` runs it on the event loop instead: only for handlers
    that never wait, and no store or a ``MemoryStore`` (another store, or an
    ``async def`` handler, is a ``ConfigurationError``).
    """

    __slots__ = ("app", "routes", "receiver", "threads", "workers")

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, Provider] | None = None,
        path: str | None = None,
        credentials: Iterable[str] | None = None,
        handlers: Iterable[HandlerFunc | TransactionalHandlerFunc | Handler] = (),
        store: Store | None = None,
        max_body_size: int | None = None,
        realm: str = "bounce-middleware",
        retry_after: int = DEFAULT_RETRY_AFTER,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        scope: Callable[[], AbstractContextManager[object]] | None = None,
        handoff: Handoff | None = None,
        threads: bool = True,
        max_threads: int | None = None,
    ) -> None:
        self.app = app
        #: False: the receiver's work runs on the event loop, not in a worker thread.
        self.threads = threads
        #: The worker threads the receiver's work runs in (None with ``threads=False``).
        count = _thread_count(max_threads, threads)
        self.workers = WorkerThreads(count) if threads else None
        self.receiver = Receiver(
            shorthand_routes(routes, path, credentials, realm),
            handlers=[bridged_handler(h) for h in handlers],
            store=bridged_store(store),
            max_body_size=max_body_size,
            retry_after=retry_after,
            lease_seconds=lease_seconds,
            scope=scope,
            handoff=handoff,
        )
        for handler in self.receiver.handlers:
            self._check_sync(handler)
        self._check_store(self.receiver.store)
        # The receiver's own dict: one lookup decides pass-through.
        self.routes = self.receiver.routes

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
        bridged = bridged_store(store)
        self._check_store(bridged)
        self.receiver.store = bridged

    @property
    def handlers(self) -> list[Handler]:
        """The registered handlers, in the order they run."""
        return self.receiver.handlers

    @property
    def max_body_size(self) -> int:
        """The largest body read, in bytes, on a route whose provider needs no more.

        A larger one is answered 413; a provider that posts larger batches
        (Mandrill) has its own limit when ``max_body_size=`` is not given:
        ``receiver.body_limits``.
        """
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
        handler = bridged_handler(func, kinds=kinds, name=name)
        self._check_sync(handler)
        return self.receiver.add_handler(handler)

    def _check_sync(self, handler: Handler) -> None:
        # On the loop, nothing can wait for a coroutine: refuse them when built.
        if not self.threads and isinstance(handler.func, AsyncHandler):
            raise ConfigurationError(
                f"handler {handler.name!r} is async def: it needs threads=True (the default)"
            )

    def _check_store(self, store: Store | None) -> None:
        # On the loop, a store that waits (a file, a server) would stop every request
        # the loop serves: only a MemoryStore is known never to.
        if self.threads or store is None or isinstance(store, MemoryStore):
            return
        if isinstance(store, AsyncStoreBridge):
            raise ConfigurationError("an async store needs threads=True (the default)")
        raise ConfigurationError(
            f"store {type(store).__name__} would block the event loop with threads=False "
            "(it may wait on a file or a server): use threads=True (the default), or a "
            "MemoryStore, or no store"
        )

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
        body = await self._read_body(path, headers.get("content-length"), receive)
        if not isinstance(body, bytes):
            return body
        full = WebhookRequest(request.method, path, headers, body, request.url, request.memo)
        if self.workers is None:
            return self.receiver.answer(full)
        return await self.workers.run(self.receiver.answer, full)

    async def _read_body(
        self, path: str, length: str | None, receive: Receive
    ) -> bytes | Answer | None:
        limit = self.receiver.body_limits[path]
        try:
            # Over the limit: refused before anything is received.
            declared_length(length, limit)
        except BodyTooLarge:
            return self._refuse_too_large(path, limit)
        except PayloadError as exc:
            logger.warning("bounce webhook refused: %s -> 400", loggable(exc.reason))
            return Answer(400, exc.reason)
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await receive()
            except OSError as exc:
                # The connection itself failed (a reset): ASGI servers raise OSError
                # subclasses for a closed connection, so an answer could not be sent.
                logger.warning(
                    "bounce webhook: the connection failed before its body was read (%s); "
                    "not answered",
                    type(exc).__name__,
                )
                return None
            except Exception as exc:
                # A server's or an outer middleware's own error (RuntimeError...): the
                # connection may be alive, so answer as the WSGI front does. Only the
                # class is logged: the message may quote the peer or the body.
                logger.warning(
                    "bounce webhook: could not read the request body (%s) -> 400",
                    type(exc).__name__,
                )
                return UNREADABLE_BODY
            kind = message["type"]
            if kind == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    # Nothing more is received: the server discards the rest.
                    return self._refuse_too_large(path, limit)
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
            elif kind == "http.disconnect":
                logger.warning(
                    "bounce webhook: the client left before its body was read; not answered"
                )
                return None

    def _refuse_too_large(self, path: str, limit: int) -> Answer:
        logger.warning("bounce webhook refused: body over %d bytes -> 413", limit)
        return self.receiver.too_large(path)

    def answer(self, request: WebhookRequest) -> Answer:
        """Answer a request whose body was read (sans-IO, synchronous; see ``Receiver``)."""
        return self.receiver.answer(request)

    def dispatch(self, events: Bounce | tuple[Bounce, ...]) -> Answer:
        """Answer for parsed events as a request would: run their handlers (through the
        store, if any), or with a ``handoff`` record them and queue them.

        Synchronous, as ``bounce-middleware replay`` calls it; ``async def``
        handlers run in an event loop of their own there.
        """
        return self.receiver.dispatch(events)

    def deliver(self, events: Bounce | tuple[Bounce, ...]) -> Answer:
        """Run the handlers for parsed events now, even with a ``handoff``, and answer."""
        return self.receiver.deliver(events)


def _thread_count(max_threads: int | None, threads: bool) -> int:
    if max_threads is None:
        return DEFAULT_MAX_THREADS
    if not threads:
        raise ConfigurationError("max_threads= sizes the worker threads: threads=False has none")
    if type(max_threads) is not int or max_threads < 1:
        raise ConfigurationError(
            f"max_threads must be a whole number of 1 or more, got {max_threads!r}"
        )
    return max_threads
