"""The sans-IO core: a :class:`WebhookRequest` in, an :class:`Answer` out.

Every front (the WSGI middleware, the ASGI one) checks the path, reads the
body under the cap and hands the request here; routing, authentication,
parsing, rejection records and delivery are this module's, tested once.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager

from .answer import HANDLER_FAILED, METHOD_NOT_ALLOWED, Answer
from .batch import deliver_batch
from .delivery import deliver
from .errors import (
    ConfigurationError,
    PayloadError,
    TemporaryFailure,
    Unauthorized,
)
from .handlers import Handler, HandlerFunc, TransactionalHandlerFunc, make_handler
from .handoff import Handoff, hand_off
from .model import Bounce, BounceKind
from .providers.base import POST_ONLY, Parsed, Provider
from .receiver_options import DEFAULT_MAX_BODY_SIZE as DEFAULT_MAX_BODY_SIZE
from .receiver_options import body_limits, check_options
from .refusals import NOT_AUTHENTICATED, Refusals
from .request import WebhookRequest
from .scope import DeliveryScope
from .store import DEFAULT_LEASE_SECONDS, Store

logger = logging.getLogger("bounce_middleware")

#: Every provider's first retry comes later than this anyway.
DEFAULT_RETRY_AFTER = 60

NOT_FOUND = Answer(404, "no webhook route here")


class Receiver(Refusals):
    """Routes, handlers and a store: answers every request to a webhook route.

    ``routes`` maps each path to its provider. The fronts own one and keep
    the pass-through check to one lookup in :attr:`routes`.
    """

    __slots__ = (
        "routes",
        "store",
        "handlers",
        "max_body_size",
        "body_limits",
        "retry_after",
        "lease_seconds",
        "scope",
        "handoff",
        "_unavailable",
        "_busy",
        "_retry",
        "_unauthorized",
        "_too_large",
    )

    def __init__(
        self,
        routes: Mapping[str, Provider],
        *,
        handlers: Iterable[HandlerFunc | TransactionalHandlerFunc | Handler] = (),
        store: Store | None = None,
        max_body_size: int | None = None,
        retry_after: int = DEFAULT_RETRY_AFTER,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        scope: Callable[[], AbstractContextManager[object]] | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        check_options(routes, store, handoff, max_body_size, lease_seconds, retry_after)
        self.routes: dict[str, Provider] = dict(routes)
        self.store = store
        #: The largest body read on every route, when configured; else each route's own.
        self.max_body_size = DEFAULT_MAX_BODY_SIZE if max_body_size is None else max_body_size
        #: The largest body read on each route: ``max_body_size`` when given, else the
        #: default or the provider's own ``max_body_size`` if larger (Mandrill's batches).
        self.body_limits = body_limits(self.routes, max_body_size)
        self._too_large = {
            limit: Answer(413, f"body is larger than {limit} bytes")
            for limit in set(self.body_limits.values())
        }
        self.retry_after = retry_after
        self.lease_seconds = lease_seconds
        self.scope = scope
        retry = (("Retry-After", str(retry_after)),)
        self._unavailable = Answer(503, "the bounce store is unavailable; retry later", retry)
        self._busy = Answer(503, "this event is being processed; retry later", retry)
        self._retry = retry
        # One 401 per challenge, built once: the answer to a refused request costs nothing.
        self._unauthorized: dict[str | None, Answer] = {None: NOT_AUTHENTICATED}
        self.handlers: list[Handler] = []
        for handler in handlers:
            self.add_handler(handler)
        #: Where events are handed to a task queue instead of run in the request (None: run).
        self.handoff = handoff
        bind = getattr(handoff, "bind", None)
        if bind is not None:
            bind(self)

    @property
    def busy_answer(self) -> Answer:
        """The 503 answered when another delivery holds an event (carries ``Retry-After``)."""
        return self._busy

    @property
    def unavailable_answer(self) -> Answer:
        """The 503 answered when the store failed (carries ``Retry-After``)."""
        return self._unavailable

    def too_large(self, path: str) -> Answer:
        """The 413 answer of a route whose body is over its limit (built once)."""
        return self._too_large[self.body_limits[path]]

    @property
    def providers(self) -> dict[str, Provider]:
        """The configured providers by name (a provider on several routes appears once)."""
        return {provider.name: provider for provider in self.routes.values()}

    def add_handler(
        self,
        func: HandlerFunc | TransactionalHandlerFunc | Handler,
        *,
        kinds: Iterable[BounceKind | str] | None = None,
        name: str | None = None,
    ) -> Handler:
        """Register a handler, optionally for some kinds only; names must be unique.

        An ``async def`` handler is awaited: on the request's event loop under
        the ASGI front, in a loop of its own elsewhere (WSGI, ``replay``, a worker).
        """
        if _is_async(func.func if isinstance(func, Handler) else func):
            # Imported only then: the bridge brings asyncio, which WSGI sites need not load.
            from .asgi_bridge import bridged_handler

            handler = bridged_handler(func, kinds=kinds, name=name)
        else:
            handler = make_handler(func, kinds=kinds, name=name)
        if any(h.name == handler.name for h in self.handlers):
            raise ConfigurationError(
                f"a handler named {handler.name!r} is already registered; "
                "pass name=... to register another with the same function"
            )
        self.handlers.append(handler)
        return handler

    def answer(self, request: WebhookRequest) -> Answer:
        """Authenticate, parse and dispatch one request to a route, and answer it."""
        provider = self.routes.get(request.path)
        if provider is None:
            return NOT_FOUND
        if provider.retry_status is None:
            return self._answer(provider, request)
        # A provider that drops an event on any 5xx (Brevo) gets its retry status instead.
        return self._with_retry_status(provider, request, self._answer)

    def precheck(self, request: WebhookRequest) -> Answer | None:
        """Run the provider's body-less checks (``check_headers``) before the body is read.

        Returns the 401 to answer, or None to go on reading the body.
        """
        provider = self.routes.get(request.path)
        check = getattr(provider, "check_headers", None)
        if check is None:
            return None
        try:
            check(request)
        except Unauthorized as exc:
            return self._unauthenticated(provider, request, exc)  # type: ignore[arg-type]
        return None

    def _answer(self, provider: Provider, request: WebhookRequest) -> Answer:
        try:
            provider.authenticate(request)
        except Unauthorized as exc:
            return self._unauthenticated(provider, request, exc)
        except TemporaryFailure as exc:
            return self._retry_later(provider, exc)
        hook = getattr(provider, "answered", None)
        if hook is None:
            return self._authenticated(provider, request)
        status = 500  # what the server answers if something below raises
        try:
            answer = self._authenticated(provider, request)
            status = answer.status
        finally:
            hook(request, status)
        return answer

    def _authenticated(self, provider: Provider, request: WebhookRequest) -> Answer:
        if request.method not in provider.methods:
            if provider.methods == POST_ONLY:
                return METHOD_NOT_ALLOWED  # built once, as every provider so far is POST-only
            allowed = ", ".join(sorted(provider.methods))
            return Answer(405, f"only {allowed} is allowed here", (("Allow", allowed),))
        try:
            parsed = provider.parse(request)
        except PayloadError as exc:
            kept_body = getattr(provider, "kept_body", None)
            body = request.body if kept_body is None else kept_body(request)
            return self._refuse(provider, body, exc.reason)
        except TemporaryFailure as exc:
            return self._retry_later(provider, exc)
        return self.dispatch_parsed(provider, parsed)

    def dispatch_parsed(self, provider: Provider, parsed: Parsed) -> Answer:
        """Keep a batch's refused events, dispatch its events, and answer for them all."""
        if parsed.rejected:
            failure = self._keep_rejections(provider, parsed.rejected)
            if failure is not None:
                return failure
        if parsed.events:
            return self.dispatch(parsed.events)
        if parsed.handshake:
            logger.info("%s handshake answered -> 200", provider.name)
            return Answer(200, parsed.handshake)
        if parsed.rejected:
            kept = "kept for replay" if self.store is not None else "not kept: no store"
            return Answer(200, f"{len(parsed.rejected)} events refused ({kept})")
        return _acknowledged(parsed.acknowledged)

    def dispatch(self, events: Bounce | Sequence[Bounce]) -> Answer:
        """Answer for parsed events: hand them to the task queue when there is a
        ``handoff`` (recorded, queued, 200 at once), else :meth:`deliver` them now."""
        if isinstance(events, Bounce):
            events = (events,)
        if self.handoff is not None:
            return hand_off(self, events)
        return self.deliver(events)

    def deliver(self, events: Bounce | Sequence[Bounce]) -> Answer:
        """Run the handlers for parsed events now (through the store, if any) and answer.

        Everything runs inside ``scope()`` when one was given, left and entered
        again after a handler fails. A task-queue worker and ``replay`` call this.
        """
        if isinstance(events, Bounce):
            events = (events,)
        # The label names the delivery in the scope's error lines; none without a scope.
        label = "" if self.scope is None else _label(events)
        scope = DeliveryScope(self.scope, label)
        if not scope.enter():
            return HANDLER_FAILED
        deliver_one = deliver if len(events) == 1 else None
        try:
            if deliver_one is not None:
                return deliver_one(
                    events[0],
                    self.handlers,
                    self.store,
                    scope,
                    lease_seconds=self.lease_seconds,
                    unavailable=self._unavailable,
                    busy=self._busy,
                )
            return deliver_batch(
                events,
                self.handlers,
                self.store,
                scope,
                lease_seconds=self.lease_seconds,
                unavailable=self._unavailable,
                busy=self._busy,
            )
        finally:
            # Whatever the scope's exit does, the answer stands: the store has it recorded.
            scope.close()


def _is_async(func: object) -> bool:
    # An async def function, or an object whose __call__ is one (as asgi_bridge.is_async).
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - any callable object
    )


def _acknowledged(record_types: tuple[str, ...]) -> Answer:
    # The record type comes from the body: name it only when it looks like one.
    names = sorted({n if _looks_like_a_name(n) else "unrecognised" for n in record_types})
    shown = ", ".join(names) if names else "empty"
    logger.info("%s record acknowledged, not dispatched -> 200", shown)
    return Answer(200, f"ignored: {shown} records are not bounces")


def _label(events: Sequence[Bounce]) -> str:
    return events[0].key if len(events) == 1 else f"batch of {len(events)}"


def _looks_like_a_name(text: str) -> bool:
    # Letters, digits, "_" and "." ("account_status_change", Resend's "email.delivered"):
    # nothing that can forge a log line.
    return text.isascii() and text.replace("_", "").replace(".", "").isalnum() and len(text) <= 40
