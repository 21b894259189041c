"""bounce-middleware: e-mail bounce webhooks for any WSGI application.

Wrap any WSGI application::

    from bounce_middleware import BounceMiddleware

    app = BounceMiddleware(wsgi_app, path="/postmark/bounce",
                           credentials=["postmark:s3cret"], handlers=[on_bounce])

``__all__`` is the public surface: what an application configures the
middleware with (stores, handlers, errors), what its handlers receive
(:class:`Bounce`, :class:`BounceKind`, :class:`Delivery`), and what the
middleware's public methods return (:class:`Answer`). Everything else is
reached through its module (``bounce_middleware.settings``, ``.auth``,
``.testing``...).
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
)
from .handlers import Delivery, Handler
from .middleware import BounceMiddleware
from .model import Bounce, BounceKind
from .store import Claim, ClaimState, MemoryStore, Record, Store, open_store

if TYPE_CHECKING:
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
    "Record",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # SQLiteStore is imported on first use: importing sqlite3 costs every application
    # that installs the middleware, most of which keep their events elsewhere.
    if name == "SQLiteStore":
        from .sqlite_store import SQLiteStore

        globals()[name] = SQLiteStore  # later lookups skip this function
        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
