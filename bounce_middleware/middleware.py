"""The WSGI front: webhook routes answered by the receiver, everything else passed through."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .answer import UNREADABLE_BODY, Answer
from .body import BodyTooLarge, BodyUnreadable, read_body
from .errors import ConfigurationError, PayloadError
from .handlers import Handler, HandlerFunc, TransactionalHandlerFunc
from .handoff import Handoff
from .model import Bounce, BounceKind
from .providers import Postmark, Provider
from .receiver import DEFAULT_MAX_BODY_SIZE, DEFAULT_RETRY_AFTER, Receiver
from .request import WebhookRequest
from .store import DEFAULT_LEASE_SECONDS, Store
from .text import loggable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from webob import Request, Response

# Re-exported: they lived here before their own modules.
__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_RETRY_AFTER",
    "Answer",
    "BodyTooLarge",
    "BounceMiddleware",
    "read_body",
]

logger = logging.getLogger("bounce_middleware")


class BounceMiddleware:
    """Wrap a WSGI app and answer e-mail providers' webhooks on their routes.

    ``routes`` maps each webhook path to its provider
    (``{"/hooks/sendgrid": SendGrid(public_key=...)}``); version 1's
    ``path=``/``credentials=`` is one Postmark route. Requests to any other
    path go straight to ``app``. On a route, the request is authenticated as
    its provider signs it, parsed into :class:`~bounce_middleware.Bounce`
    events, recorded in ``store`` (if any) and handed to every handler
    subscribed to each event's kind.
    """

    # Slots make the attribute reads on the pass-through path measurably cheaper:
    # it runs on every request of the application.
    __slots__ = ("app", "routes", "receiver")

    def __init__(
        self,
        app: WSGIApplication,
        *,
        routes: Mapping[str, Provider] | None = None,
        path: str | None = None,
        credentials: Iterable[str] | None = None,
        handlers: Iterable[HandlerFunc | TransactionalHandlerFunc | Handler] = (),
        store: Store | None = None,
        max_body_size: int | None = None,
        # Shown by clients in the credentials prompt of the path= shorthand's route.
        realm: str = "bounce-middleware",
        retry_after: int = DEFAULT_RETRY_AFTER,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        # Entered around the store and handlers of each delivery: the place for a
        # framework's per-request housekeeping (e.g. Django's connection handling).
        scope: Callable[[], AbstractContextManager[object]] | None = None,
        # Run the handlers in a task queue's worker instead of the request (Celery:
        # bounce_middleware.celery_tasks.CeleryHandoff); needs a store.
        handoff: Handoff | None = None,
    ) -> None:
        self.app = app
        self.receiver = Receiver(
            shorthand_routes(routes, path, credentials, realm),
            handlers=handlers,
            store=store,
            max_body_size=max_body_size,
            retry_after=retry_after,
            lease_seconds=lease_seconds,
            scope=scope,
            handoff=handoff,
        )
        # The receiver's own dict: one lookup decides pass-through.
        self.routes = self.receiver.routes

    @classmethod
    def from_settings(
        cls, app: WSGIApplication, settings: Mapping[str, Any], prefix: str = "bounce."
    ) -> BounceMiddleware:
        """Build the middleware from a flat mapping such as Pyramid's ``.ini`` settings.

        See :func:`bounce_middleware.settings.parse_settings` for the keys.
        """
        from .settings import parse_settings

        return cls(app, **parse_settings(settings, prefix))

    # The receiver's configuration, read (and for ``store``, replaced) through the front.
    @property
    def store(self) -> Store | None:
        """The store events are recorded in (None: handlers run without records)."""
        return self.receiver.store

    @store.setter
    def store(self, store: Store | None) -> None:
        self.receiver.store = store

    @property
    def handlers(self) -> list[Handler]:
        """The registered handlers, in the order they run."""
        return self.receiver.handlers

    @property
    def max_body_size(self) -> int:
        """The largest body read, in bytes, on a route whose provider needs no more.

        A larger one is answered 413. Without ``max_body_size=``, a provider
        that posts larger batches (Mandrill) has its own limit on its route:
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
        """Register a handler, optionally for some kinds only; names must be unique."""
        return self.receiver.add_handler(func, kinds=kinds, name=name)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The hot path of every request the application serves: one dict lookup.
        if environ.get("PATH_INFO") not in self.routes:
            return self.app(environ, start_response)
        # A route answers straight from the environ: no Request/Response objects,
        # which cost more than the authentication and parsing themselves.
        answer = self.process(environ)
        start_response(answer.status_line, answer.headerlist())
        # A HEAD answer has headers only (Mandrill checks a webhook URL with one).
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [answer.body]

    def handle(self, request: Request) -> Response:
        """Answer one request to a webhook route, as a WebOb response."""
        return self.process(request.environ).to_response()

    def process(self, environ: WSGIEnvironment) -> Answer:
        """Read one route's request from the WSGI environ and answer it."""
        request = webhook_request(environ, b"")
        # Checks that need no body (HTTP Basic) come first: an unauthenticated client
        # never makes the server read a body.
        early = self.receiver.precheck(request)
        if early is not None:
            return early
        limit = self.receiver.body_limits[request.path]
        try:
            body = read_body(environ, limit)
        except BodyTooLarge:
            logger.warning("bounce webhook refused: body over %d bytes -> 413", limit)
            return self.receiver.too_large(request.path)
        except BodyUnreadable as exc:
            logger.warning("bounce webhook: could not read the request body (%s) -> 400", exc.cause)
            return UNREADABLE_BODY
        except PayloadError as exc:
            logger.warning("bounce webhook refused: %s -> 400", loggable(exc.reason))
            return Answer(400, exc.reason)
        # The same memo: what the body-less checks established is not checked twice.
        return self.receiver.answer(
            WebhookRequest(
                request.method, request.path, request.headers, body, request.url, request.memo
            )
        )

    def answer(self, request: WebhookRequest) -> Answer:
        """Answer a request whose body was read (sans-IO; see :class:`~.receiver.Receiver`)."""
        return self.receiver.answer(request)

    def dispatch(self, events: Bounce | tuple[Bounce, ...]) -> Answer:
        """Answer for parsed events as a request would: run their handlers (through the
        store, if any), or with a ``handoff`` record them and queue them."""
        return self.receiver.dispatch(events)

    def deliver(self, events: Bounce | tuple[Bounce, ...]) -> Answer:
        """Run the handlers for parsed events now, even with a ``handoff``, and answer."""
        return self.receiver.deliver(events)


def shorthand_routes(
    routes: Mapping[str, Provider] | None,
    path: str | None,
    credentials: Iterable[str] | None,
    realm: str,
) -> Mapping[str, Provider]:
    """``routes``, or version 1's ``path=``/``credentials=`` as one Postmark route."""
    if routes is not None:
        if path is not None or credentials is not None:
            raise ConfigurationError(
                "give routes=..., or path= and credentials= (one Postmark route), not both"
            )
        return routes
    if path is None:
        raise ConfigurationError(
            "no webhook route: give routes={path: provider}, or path= and credentials="
        )
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError(f"path must start with '/', got {path!r}")
    # credential_list (in Postmark) says precisely what is wrong with missing ones.
    return {path: Postmark(credentials=credentials, realm=realm)}  # type: ignore[arg-type]


def webhook_request(
    environ: WSGIEnvironment, body: bytes, memo: dict[str, Any] | None = None
) -> WebhookRequest:
    """The sans-IO request of a WSGI environ whose body was read.

    ``memo`` carries what the body-less checks already established (see
    :meth:`BounceMiddleware.process`) into the request with the body.
    """
    path = environ.get("PATH_INFO", "")
    return WebhookRequest(
        environ.get("REQUEST_METHOD", ""),
        path,
        EnvironHeaders(environ),
        body,
        _url(environ, path),
        {} if memo is None else memo,
    )


class EnvironHeaders(Mapping[str, str]):
    """The request headers of a WSGI environ, by lower-case name, read on demand.

    A view, not a copy: a provider reads two or three headers, and copying the
    environ's dozens of entries cost more than its whole Basic-auth check.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: WSGIEnvironment) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        if name == "content-type" or name == "content-length":
            return name.upper().replace("-", "_")
        return "HTTP_" + name.upper().replace("-", "_")

    def __getitem__(self, name: str) -> str:
        value = self._environ.get(self._key(name))
        if type(value) is not str:
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """The header's value, or ``default``: one dict lookup."""
        value = self._environ.get(self._key(name))
        return value if type(value) is str else default

    def __iter__(self) -> Iterator[str]:
        for key, value in self._environ.items():
            if type(value) is not str:
                continue
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").lower()
            elif key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                yield key.replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _url(environ: WSGIEnvironment, path: str) -> str:
    # PEP 3333's URL reconstruction: what the provider called (Mandrill signs it).
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "")
        port = environ.get("SERVER_PORT", "")
        if port and port != ("443" if scheme == "https" else "80"):
            host += ":" + port
    url = f"{scheme}://{host}{environ.get('SCRIPT_NAME', '')}{path}"
    query = environ.get("QUERY_STRING")
    return f"{url}?{query}" if query else url
