"""``settings.BOUNCE_MIDDLEWARE``: one dict, read through the core's one settings reader.

Keys (upper case, as Django settings are written):

==================  =========================================================  ==============
key                 meaning                                                    default
==================  =========================================================  ==============
``PATH``            the path the webhook is posted to                          required
``CREDENTIALS``     ``"user:password"`` strings; several allow rotation        required
``HANDLERS``        callables or dotted names, each taking a ``Bounce``        ``notify_users``
``STORE``           a store URL, dotted name or object; ``None`` for none      ``DjangoStore()``
``PROVIDER``        provider name or dotted name                               ``"postmark"``
``MAX_BODY_SIZE``   largest body accepted, in bytes                            1 MiB
``REALM``           Basic auth realm                                           ``bounce-middleware``
``RETRY_AFTER``     seconds, in ``Retry-After`` of 503 answers                 60
``LEASE_SECONDS``   how long one delivery holds an event                       300
``NOTIFY_KINDS``    kinds that leave a notice for the user                     ``["hard"]``
``NOTICE_MESSAGE``  notice text with ``{email}``, ``{description}``,           see below
                    ``{account_url}``; HTML, the values are escaped
``ACCOUNT_URL``     URL name or path of the page where users change address    ``None``
==================  =========================================================  ==============

The dict is translated to the flat ``bounce.*`` mapping and read by
:func:`bounce_middleware.settings.parse_settings`, once per process (and again
after ``override_settings`` in tests); nothing is parsed per request.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.model import BounceKind
from bounce_middleware.settings import Converter, as_kinds, parse_settings

SETTING = "BOUNCE_MIDDLEWARE"

#: Dotted name of the handler used when ``HANDLERS`` is not given.
DEFAULT_HANDLER = "bounce_middleware.adapters.django.handlers.notify_users"
#: Dotted name of the store used when ``STORE`` is not given.
DEFAULT_STORE = "bounce_middleware.adapters.django.store.default_store"

# A hard bounce means the address is dead; soft ones fix themselves, and a
# spam complaint is not something to tell the user about.
DEFAULT_NOTIFY_KINDS = frozenset({BounceKind.HARD})

DEFAULT_NOTICE_MESSAGE = _(
    "Our e-mail to {email} could not be delivered: {description} "
    'Please <a href="{account_url}">check your e-mail address</a>.'
)
DEFAULT_NOTICE_MESSAGE_NO_LINK = _(
    "Our e-mail to {email} could not be delivered: {description} Please check your e-mail address."
)


def _text(value: Any) -> str | Promise:
    if isinstance(value, str | Promise):
        return value
    raise TypeError("expected a string")


def _optional_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError("expected a string or None")


#: The adapter's own keys, read by the same reader as the middleware's.
ADAPTER_KEYS: Mapping[str, Converter] = {
    "notify_kinds": as_kinds,
    "notice_message": _text,
    "account_url": _optional_text,
}


@dataclass(frozen=True, slots=True)
class Config:
    """``BOUNCE_MIDDLEWARE`` read and checked."""

    middleware: Mapping[str, Any]  #: keyword arguments for ``BounceMiddleware``
    notify_kinds: frozenset[BounceKind]
    notice_message: str | Promise | None  #: None: the default, with or without a link
    account_url: str | None


def flat_settings(raw: object) -> dict[str, Any]:
    """``{"PATH": ...}`` as the reader's ``{"bounce.path": ...}``, with the adapter's defaults."""
    if raw is None:
        raise ConfigurationError(f"settings.{SETTING} is not set; it needs PATH and CREDENTIALS")
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"settings.{SETTING} must be a dict")
    flat: dict[str, Any] = {"bounce.handlers": [DEFAULT_HANDLER], "bounce.store": DEFAULT_STORE}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"settings.{SETTING} keys must be strings, got {key!r}")
        flat["bounce." + key.lower()] = value
    if flat["bounce.store"] is None:
        del flat["bounce.store"]
    return flat


def django_message(message: str) -> str:
    """Name keys as the user wrote them: ``'bounce.path'`` becomes ``BOUNCE_MIDDLEWARE["PATH"]``."""
    return re.sub(
        r"(?<![\w.])'?bounce\.([a-z_]+)'?", lambda m: f'{SETTING}["{m.group(1).upper()}"]', message
    )


def read_config(raw: object) -> Config:
    """Read a ``BOUNCE_MIDDLEWARE`` value; raise ``ConfigurationError`` naming the bad key."""
    try:
        parsed = parse_settings(flat_settings(raw), "bounce.", extra=ADAPTER_KEYS)
    except ConfigurationError as exc:
        raise ConfigurationError(django_message(str(exc))) from None
    notify_kinds = parsed.pop("notify_kinds", DEFAULT_NOTIFY_KINDS)
    notice_message = parsed.pop("notice_message", None)
    account_url = parsed.pop("account_url", None)
    return Config(parsed, notify_kinds, notice_message, account_url)


@functools.cache
def get_config() -> Config:
    """The project's configuration, read once; ``ImproperlyConfigured`` if it is wrong."""
    try:
        return read_config(getattr(settings, SETTING, None))
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def clear_config(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: forget the cached configuration."""
    if setting == SETTING:
        get_config.cache_clear()
