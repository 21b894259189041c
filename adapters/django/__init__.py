"""Django adapter: bounce records, a user-store handler and a one-time notice.

Add ``"bounce_middleware.adapters.django"`` to ``INSTALLED_APPS`` (app label
``bounce_middleware``), configure ``settings.BOUNCE_MIDDLEWARE``, and change one
line of ``wsgi.py``::

    from bounce_middleware.adapters.django.wsgi import get_wsgi_application

What users call is importable from this package once Django's apps are
loaded (:data:`__all__`); each lives in a submodule: ``wsgi``
(:func:`~.wsgi.wrap`, :func:`~.wsgi.get_wsgi_application`), ``asgi``
(:func:`~.asgi.wrap`, :func:`~.asgi.get_asgi_application`), ``handlers``
(:class:`~.handlers.UserBounceHandler`, its default instance
:data:`~.handlers.notify_users`), ``middleware``
(:class:`~.middleware.BounceNoticeMiddleware`), ``store``
(:class:`~.store.DjangoStore`), ``conf`` (:func:`~.conf.get_state`, the
settings, documented there), ``db`` (:class:`~.db.Folded`). This module
imports them on first use only, so that Django can import it while loading apps.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:
    import django  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without Django
    from bounce_middleware.errors import ImproperlyInstalled

    raise ImproperlyInstalled("django", "Django") from None

if TYPE_CHECKING:
    from .asgi import get_asgi_application
    from .conf import BounceState, get_state
    from .db import Folded
    from .handlers import UserBounceHandler, notify_users
    from .middleware import BounceNoticeMiddleware
    from .store import DjangoStore
    from .wsgi import get_wsgi_application, wrap

__all__ = [
    "BounceNoticeMiddleware",
    "BounceState",
    "DjangoStore",
    "Folded",
    "UserBounceHandler",
    "get_asgi_application",
    "get_state",
    "get_wsgi_application",
    "notify_users",
    "wrap",
]

_HOME = {
    "BounceNoticeMiddleware": "middleware",
    "BounceState": "conf",
    "DjangoStore": "store",
    "Folded": "db",
    "UserBounceHandler": "handlers",
    "get_asgi_application": "asgi",
    "get_state": "conf",
    "get_wsgi_application": "wsgi",
    "notify_users": "handlers",
    "wrap": "wsgi",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule on first use (after Django's apps load)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
