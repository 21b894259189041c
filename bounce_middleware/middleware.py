"""The WSGI middleware: one intercepted path, everything else passed through."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .answer import (
    HANDLER_FAILED,
    METHOD_NOT_ALLOWED,
    UNREADABLE_BODY,
    Answer,
)
from .auth import BasicAuth, credential_list, credential_warnings
from .body import BodyTooLarge, BodyUnreadable, read_body
from .delivery import deliver
from .errors import ConfigurationError, PayloadError, StoreUnavailable
from .handlers import (
    Handler,
    HandlerFunc,
    TransactionalHandlerFunc,
    make_handler,
)
from .model import Bounce, BounceKind
from .providers import Ignored, PostmarkProvider, Provider
from .scope import DeliveryScope
from .store import DEFAULT_LEASE_SECONDS, Store, check_store
from .text import loggable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from webob import Request, Response

# Re-exported: they lived here before their own modules.
__all__ = ["Answer", "BodyTooLarge", "BounceMiddleware", "read_body"]

logger = logging.getLogger("bounce_middleware")

# Postmark payloads are a few KiB; Content dumps stay well below this.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
# Postmark's first retry comes after a minute anyway.
DEFAULT_RETRY_AFTER = 60


class BounceMiddleware:
    """Wrap a WSGI app and answer a provider's bounce webhooks on one path.

    Requests to any other path go straight to ``app``. On ``path``, the request
    is authenticated (HTTP Basic, any of ``credentials``), its body parsed by
    ``provider`` into a :class:`~bounce_middleware.Bounce`, recorded in
    ``store`` (if any) and handed to every handler subscribed to its kind.
    """

    # Slots make the attribute reads on the pass-through path (self.path, self.app)
    # measurably cheaper: it runs on every request of the application.
    __slots__ = (
        "app",
        "path",
        "auth",
        "store",
        "provider",
        "max_body_size",
        "realm",
        "retry_after",
        "lease_seconds",
        "scope",
        "handlers",
        "_unauthorized",
        "_too_large",
        "_store_unavailable",
        "_busy",
    )

    def __init__(
        self,
        app: WSGIApplication,
        *,
        path: str,
        credentials: Iterable[str],
        handlers: Iterable[HandlerFunc | TransactionalHandlerFunc | Handler] = (),
        store: Store | None = None,
        provider: Provider | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        # Shown by clients in the credentials prompt; harmless to leave as is.
        realm: str = "bounce-middleware",
        retry_after: int = DEFAULT_RETRY_AFTER,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        # Entered around the store and handlers of each delivery: the place for a
        # framework's per-request housekeeping (e.g. Django's connection handling).
        scope: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"path must start with '/', got {path!r}")
        if max_body_size < 1:
            raise ConfigurationError("max_body_size must be a positive number of bytes")
        if not lease_seconds > 0:
            # A lease of 0 would let a redelivery run the handlers of a running delivery.
            raise ConfigurationError("lease_seconds must be a positive number of seconds")
        if retry_after < 0:
            raise ConfigurationError("retry_after must be a number of seconds, 0 or more")
        if '"' in realm or "\\" in realm:
            raise ConfigurationError("realm must not contain quotes or backslashes")
        self.app = app
        self.path = path
        entries = credential_list(credentials)  # once: it may be an iterator
        self.auth = BasicAuth(entries)
        for warning in credential_warnings(entries):
            logger.warning("bounce-middleware configuration: %s", warning)
        if store is not None:
            check_store(store)
        self.store = store
        self.provider: Provider = provider if provider is not None else PostmarkProvider()
        self.max_body_size = max_body_size
        self.realm = realm
        self.retry_after = retry_after
        self.lease_seconds = lease_seconds
        self.scope = scope
        # The answers that depend only on the configuration, built once.
        challenge = (("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),)
        self._unauthorized = Answer(401, "authentication required", challenge)
        self._too_large = Answer(413, f"body is larger than {max_body_size} bytes")
        retry = (("Retry-After", str(retry_after)),)
        self._store_unavailable = Answer(503, "the bounce store is unavailable; retry later", retry)
        self._busy = Answer(503, "this event is being processed; retry later", retry)
        self.handlers: list[Handler] = []
        for handler in handlers:
            self.add_handler(handler)

    @classmethod
    def from_settings(
        cls, app: WSGIApplication, settings: Mapping[str, Any], prefix: str = "bounce."
    ) -> BounceMiddleware:
        """Build the middleware from a flat mapping such as Pyramid's ``.ini`` settings.

        See :func:`bounce_middleware.settings.parse_settings` for the keys.
        """
        from .settings import parse_settings

        return cls(app, **parse_settings(settings, prefix))

    def add_handler(
        self,
        func: HandlerFunc | TransactionalHandlerFunc | Handler,
        *,
        kinds: Iterable[BounceKind | str] | None = None,
        name: str | None = None,
    ) -> Handler:
        """Register a handler, optionally for some kinds only; names must be unique."""
        handler = make_handler(func, kinds=kinds, name=name)
        if any(h.name == handler.name for h in self.handlers):
            raise ConfigurationError(
                f"a handler named {handler.name!r} is already registered; "
                "pass name=... to register another with the same function"
            )
        self.handlers.append(handler)
        return handler

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The hot path of every request the application serves: one lookup, one compare.
        if environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        # The bounce path answers straight from the environ: no Request/Response objects,
        # which cost more than the authentication and parsing themselves.
        answer = self.process(environ)
        start_response(answer.status_line, answer.headerlist())
        return [answer.body]

    def handle(self, request: Request) -> Response:
        """Answer one request to the bounce path, as a WebOb response."""
        return self.process(request.environ).to_response()

    def process(self, environ: WSGIEnvironment) -> Answer:
        """Authenticate, read, parse and dispatch one bounce-path request."""
        if not self.auth.check(environ.get("HTTP_AUTHORIZATION")):
            logger.warning("bounce webhook refused: missing or wrong credentials -> 401")
            return self._unauthorized
        if environ.get("REQUEST_METHOD") != "POST":
            return METHOD_NOT_ALLOWED
        try:
            body = read_body(environ, self.max_body_size)
        except BodyTooLarge:
            logger.warning("bounce webhook refused: body over %d bytes -> 413", self.max_body_size)
            return self._too_large
        except BodyUnreadable as exc:
            logger.warning("bounce webhook: could not read the request body (%s) -> 400", exc.cause)
            return UNREADABLE_BODY
        except PayloadError as exc:
            logger.warning("bounce webhook refused: %s -> 400", loggable(exc.reason))
            return Answer(400, exc.reason)
        try:
            parsed = self.provider.parse(body)
        except PayloadError as exc:
            return self._refuse(body, exc.reason)
        if isinstance(parsed, Ignored):
            # The record type comes from the body: name it only when it looks like one.
            name = parsed.record_type
            if not (name.isascii() and name.isalnum() and len(name) <= 40):
                name = "unrecognised"
            logger.info("%s record acknowledged, not dispatched -> 200", name)
            return Answer(200, f"ignored: {name} records are not bounces")
        return self.dispatch(parsed)

    def _refuse(self, body: bytes, reason: str) -> Answer:
        """Answer 400 to an authenticated body the parser refused, keeping it in the store.

        Nothing authenticated is dropped: the store keeps the body and reason as
        a rejected record (``bounce-middleware list --rejected``, ``replay``). If
        the store cannot, the answer is 503 so that the provider retries.
        Without a store one ERROR line says what was lost, and why.
        """
        store = self.store
        shown = loggable(reason)
        if store is None:
            logger.error(
                "authenticated %s webhook refused and not kept (no store configured): %s -> 400",
                self.provider.name,
                shown,
            )
            return Answer(400, reason)
        scope = DeliveryScope(self.scope, f"{self.provider.name}:rejected")
        try:
            if not scope.enter():
                raise StoreUnavailable("the delivery scope could not be entered")
            key = store.reject(self.provider.name, body, reason)
        except StoreUnavailable as exc:
            logger.error(
                "authenticated %s webhook refused (%s) and the store could not keep it (%s) -> 503",
                self.provider.name,
                shown,
                loggable(exc),
            )
            return self._store_unavailable
        finally:
            scope.close()
        logger.warning(
            "bounce webhook refused: %s -> 400; kept as rejected record %s", shown, loggable(key)
        )
        return Answer(400, reason)

    def dispatch(self, bounce: Bounce) -> Answer:
        """Run the handlers for a parsed bounce (through the store, if any) and answer.

        Everything runs inside ``scope()`` when one was given, left and entered
        again after a handler fails.
        """
        scope = DeliveryScope(self.scope, bounce.key)
        if not scope.enter():
            return HANDLER_FAILED
        try:
            return deliver(
                bounce,
                self.handlers,
                self.store,
                scope,
                lease_seconds=self.lease_seconds,
                unavailable=self._store_unavailable,
                busy=self._busy,
            )
        finally:
            # Whatever the scope's exit does, the answer stands: the store has it recorded.
            scope.close()
