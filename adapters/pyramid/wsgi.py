"""Putting the Pyramid app inside the middleware: :func:`wrap`, or the PasteDeploy filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyramid.config

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.settings import parse_settings

from .config import BounceState
from .notice import REGISTRY_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["filter_app_factory", "wrap"]


def wrap(config_or_app: Any) -> BounceMiddleware:
    """The Pyramid app inside the bounce middleware, configured by ``config.include``.

    Takes the ``Configurator`` (its WSGI app is made here, which commits the
    configuration) or the app it made (``config.make_wsgi_app()``).
    """
    if isinstance(config_or_app, pyramid.config.Configurator):
        app = config_or_app.make_wsgi_app()
    else:
        app = config_or_app
    state = _state_of(app)
    if state is None:
        raise ConfigurationError(
            "wrap() needs a Pyramid app configured with "
            'config.include("bounce_middleware.adapters.pyramid")'
        )
    return state.wrap(app)


def _state_of(app: Any) -> BounceState | None:
    registry = getattr(app, "registry", None)
    if registry is None or not hasattr(registry, "get"):
        return None
    state: BounceState | None = registry.get(REGISTRY_KEY)
    return state


def filter_app_factory(
    app: WSGIApplication, global_conf: Mapping[str, Any], **local_conf: Any
) -> BounceMiddleware:
    """The PasteDeploy filter ``egg:bounce-middleware#bounce``.

    Where the wrapped app is a Pyramid app that ran ``config.include``, its
    ``bounce.*`` settings (in ``[app:...]``) configure the middleware and the
    filter section stays empty. Any other WSGI app is configured by ``bounce.*``
    keys in the filter section itself: the core keys only (routes and each
    provider's options, or path and credentials; handlers, store, ...), since
    the user store and notice need the include.
    Settings in both places are refused rather than merged.
    """
    unknown = sorted(k for k in local_conf if not k.startswith("bounce."))
    if unknown:
        raise ConfigurationError(
            f"[filter:bounce] takes bounce.* settings only; unknown: {', '.join(unknown)}"
        )
    state = _state_of(app)
    if state is not None:
        if local_conf:
            raise ConfigurationError(
                "the app already reads bounce.* settings through config.include; keep them "
                "in its [app:...] section and leave [filter:bounce] with only 'use ='"
            )
        return state.wrap(app)
    if not local_conf:
        raise ConfigurationError(
            "[filter:bounce] needs bounce.path and bounce.credentials (one Postmark route) "
            "or bounce.routes with each provider's bounce.<provider>.<option> settings (or "
            'wrap a Pyramid app that runs config.include("bounce_middleware.adapters.pyramid"))'
        )
    return BounceMiddleware(app, **parse_settings(local_conf, "bounce."))
