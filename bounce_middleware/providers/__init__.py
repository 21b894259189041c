"""Webhook providers: each authenticates its requests and parses them into events.

A provider is one module with one class keeping the
:class:`~bounce_middleware.providers.base.Provider` protocol; adding one never
touches the middleware. Providers that need the ``crypto`` extra import
``cryptography`` only when built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import POST_ONLY, Parsed, Provider, Rejection, load_json_object
from .postmark import Postmark

if TYPE_CHECKING:  # imported on first use (below), so the core never loads them unasked
    from .amazon_ses import AmazonSES
    from .brevo import Brevo
    from .mailgun import Mailgun
    from .mailjet import Mailjet
    from .mandrill import Mandrill
    from .resend import Resend
    from .sendgrid import SendGrid
    from .sparkpost import SparkPost

__all__ = [
    "POST_ONLY",
    "AmazonSES",
    "Brevo",
    "Mailgun",
    "Mailjet",
    "Mandrill",
    "Resend",
    "SendGrid",
    "SparkPost",
    "PROVIDERS",
    "Parsed",
    "Postmark",
    "Provider",
    "Rejection",
    "load_json_object",
    "provider_class",
]

#: Registered names (as settings and ``send --provider`` spell them) -> "module:Class".
PROVIDERS: dict[str, str] = {
    "postmark": "bounce_middleware.providers.postmark:Postmark",
    "sendgrid": "bounce_middleware.providers.sendgrid:SendGrid",
    "mailgun": "bounce_middleware.providers.mailgun:Mailgun",
    "amazon_ses": "bounce_middleware.providers.amazon_ses:AmazonSES",
    "mailjet": "bounce_middleware.providers.mailjet:Mailjet",
    "sparkpost": "bounce_middleware.providers.sparkpost:SparkPost",
    "brevo": "bounce_middleware.providers.brevo:Brevo",
    "resend": "bounce_middleware.providers.resend:Resend",
    "mandrill": "bounce_middleware.providers.mandrill:Mandrill",
}


def provider_class(name: str) -> Any:
    """The provider class registered as ``name`` (e.g. ``"sendgrid"``)."""
    from importlib import import_module

    from bounce_middleware.errors import ConfigurationError

    try:
        module_name, _, attr = PROVIDERS[name].partition(":")
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigurationError(f"unknown provider {name!r}; known: {known}") from None
    return getattr(import_module(module_name), attr)


def __getattr__(name: str) -> Any:
    # SendGrid, Mailgun, AmazonSES... are imported on first use: the core never loads
    # a provider (or its optional dependency) that the application does not configure.
    for spec in PROVIDERS.values():
        module_name, _, attr = spec.partition(":")
        if attr == name:
            from importlib import import_module

            return getattr(import_module(module_name), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
