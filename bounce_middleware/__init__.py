"""bounce-middleware: e-mail bounce webhooks for any WSGI application.

Wrap any WSGI application::

    from bounce_middleware import BounceMiddleware
    from bounce_middleware.providers import Postmark, SendGrid

    app = BounceMiddleware(wsgi_app, routes={
        "/hooks/postmark": Postmark(credentials=["postmark:s3cret"]),
        "/hooks/sendgrid": SendGrid(public_key="MFkwEwYH..."),
    }, handlers=[on_bounce])

``__all__`` is the public surface: what an application configures the
middleware with (stores, handlers, errors), what its handlers receive
(:class:`Bounce`, :class:`BounceKind`, :class:`Delivery`), and what the
middleware's public methods take and return (:class:`WebhookRequest`,
:class:`Answer`). Providers are in :mod:`bounce_middleware.providers`;
everything else is reached through its module (``bounce_middleware.settings``,
``.auth``, ``.testing``...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .answer import Answer
from .errors import (
    BounceError,
    ConfigurationError,
    ImproperlyInstalled,
    PayloadError,
    StoreUnavailable,
    TemporaryFailure,
    Unauthorized,
)
from .handlers import Delivery, Handler
from .middleware import BounceMiddleware
from .model import Bounce, BounceKind
from .request import WebhookRequest
from .store import Claim, ClaimState, MemoryStore, Record, Store, open_store

if TYPE_CHECKING:
    from .postgres_store import PostgresStore
    from .sqlite_store import SQLiteStore

__all__ = [
    "Answer",
    "Bounce",
    "BounceError",
    "BounceKind",
    "BounceMiddleware",
    "Claim",
    "ClaimState",
    "ConfigurationError",
    "Delivery",
    "Handler",
    "ImproperlyInstalled",
    "MemoryStore",
    "PayloadError",
    "PostgresStore",
    "Record",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "TemporaryFailure",
    "Unauthorized",
    "WebhookRequest",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # SQLiteStore is imported on first use: importing sqlite3 costs every application
    # that installs the middleware, most of which keep their events elsewhere.
    if name == "SQLiteStore":
        from .sqlite_store import SQLiteStore

        globals()[name] = SQLiteStore  # later lookups skip this function
        return SQLiteStore
    if name == "PostgresStore":  # psycopg is an optional extra: imported only when used
        from .postgres_store import PostgresStore

        globals()[name] = PostgresStore
        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
