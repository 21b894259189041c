"""Pyramid integration: ``config.include``, a PasteDeploy filter, a user store, a one-time flash.

In the application factory::

    config.include("bounce_middleware.adapters.pyramid")   # reads bounce.* settings
    app = wrap(config)                                     # the Router inside the middleware

or, with the settings in ``[app:main]``, in a PasteDeploy pipeline (the filter
right before the app, so that it finds the app's registry)::

    [filter:bounce]
    use = egg:bounce-middleware#bounce

    [pipeline:main]
    pipeline = bounce myapp

Every setting is listed in :func:`includeme`'s docstring. Modules: ``config``
(the include, settings and state), ``notice`` (the one-time flash and
transactions), ``wsgi`` (:func:`wrap` and the filter).
"""

from __future__ import annotations

import warnings
from typing import Any

from bounce_middleware.errors import ImproperlyInstalled

try:
    import pyramid  # noqa: F401
    import transaction  # noqa: F401
    import zope.sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImproperlyInstalled("pyramid", "Pyramid") from exc

from .config import SESSION_FACTORY_KEY as SESSION_FACTORY_KEY
from .config import BounceState, includeme
from .config import add_bounce_handler as add_bounce_handler
from .config import settings_keys as settings_keys
from .notice import REGISTRY_KEY as REGISTRY_KEY
from .notice import identity_user as identity_user
from .notice import notice_tween_factory as notice_tween_factory
from .notice import transaction_scope
from .wsgi import filter_app_factory, wrap

__all__ = ["BounceState", "filter_app_factory", "includeme", "transaction_scope", "wrap"]


def __getattr__(name: str) -> Any:
    # Names renamed for the one vocabulary of every adapter, kept for a while.
    if name == "PyramidBounce":
        warnings.warn("PyramidBounce is now BounceState", DeprecationWarning, stacklevel=2)
        return BounceState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
