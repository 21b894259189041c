"""bounce-middleware: e-mail bounce webhooks for any WSGI application.

Wrap any WSGI application::

    from bounce_middleware import BounceMiddleware

    app = BounceMiddleware(wsgi_app, path="/postmark/bounce",
                           credentials=["postmark:s3cret"], handlers=[on_bounce])
"""

from __future__ import annotations

from .errors import (
    BounceError,
    ConfigurationError,
    ImproperlyInstalled,
    PayloadError,
    StoreUnavailable,
)
from .handlers import Handler
from .middleware import BounceMiddleware
from .model import Bounce, BounceKind
from .sqlite_store import SQLiteStore
from .store import Claim, ClaimState, MemoryStore, Record, Store, open_store

__all__ = [
    "Bounce",
    "BounceError",
    "BounceKind",
    "BounceMiddleware",
    "Claim",
    "ClaimState",
    "ConfigurationError",
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
