"""Webhook providers: each turns a request body into a :class:`~bounce_middleware.Bounce`.

A provider is one module implementing :class:`~bounce_middleware.providers.base.Provider`;
adding one never touches the middleware.
"""

from __future__ import annotations

from .base import Ignored, Parsed, Provider, load_json_object
from .postmark import PostmarkProvider

__all__ = ["Ignored", "Parsed", "PostmarkProvider", "Provider", "load_json_object", "get_provider"]

_PROVIDERS: dict[str, type[Provider]] = {"postmark": PostmarkProvider}


def get_provider(name: str) -> Provider:
    """Return a new provider instance by its registered name (e.g. ``"postmark"``)."""
    from bounce_middleware.errors import ConfigurationError

    try:
        return _PROVIDERS[name]()
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS))
        raise ConfigurationError(f"unknown provider {name!r}; known: {known}") from None
