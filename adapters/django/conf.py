"""``settings.BOUNCE_MIDDLEWARE``: one dict, read through the core's one settings reader.

Keys (upper case, as Django settings are written):

===================  ========================================================  ==============
key                  meaning                                                   default
===================  ========================================================  ==============
``ROUTES``           ``{path: provider}``: a provider name (``"postmark"``,    required, or
                     ``"sendgrid"``, ``"mailgun"``, ``"amazon_ses"``), a       ``PATH`` and
                     dotted name or a provider object                          ``CREDENTIALS``
``<PROVIDER>``       a dict of a named provider's options, e.g.                per provider
                     ``"SENDGRID": {"PUBLIC_KEY": "MFkw..."}``
``PATH``             version 1's one Postmark route: its path...               (no ``ROUTES``)
``CREDENTIALS``      ...and its ``"user:password"`` strings (several:          (no ``ROUTES``)
                     rotation)
``HANDLERS``         callables or dotted names, each taking a ``Bounce``       ``notify_users``
``STORE``            a store URL, dotted name or object; ``None`` for none     ``DjangoStore()``
``MAX_BODY_SIZE``    largest body accepted, in bytes                           1 MiB
``REALM``            Basic auth realm of the ``PATH`` route                    ``bounce-middleware``
``RETRY_AFTER``      seconds, in ``Retry-After`` of 503 answers                60
``LEASE_SECONDS``    how long one delivery holds an event                      300
``NOTIFY_KINDS``     kinds that leave a notice for the user                    ``["hard"]``
``NOTICE_CATEGORY``  the notice's message level: ``debug``, ``info``,          ``"warning"``
                     ``success``, ``warning`` or ``error``
``NOTICE_MESSAGE``   notice text with ``{email}``, ``{description}``,          see below
                     ``{account_url}``; HTML, the values are escaped
``ACCOUNT_URL``      URL name or path of the page where users change address   ``None``
===================  ========================================================  ==============

For example, Postmark and SendGrid on two paths::

    BOUNCE_MIDDLEWARE = {
        "ROUTES": {"/hooks/postmark": "postmark", "/hooks/sendgrid": "sendgrid"},
        "POSTMARK": {"CREDENTIALS": [os.environ["POSTMARK_WEBHOOK_CREDENTIALS"]]},
        "SENDGRID": {"PUBLIC_KEY": os.environ["SENDGRID_VERIFICATION_KEY"]},
    }

The dict is translated to the flat ``bounce.*`` mapping and read by
:func:`bounce_middleware.settings.parse_settings` (which names keys as written
here: ``BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIC_KEY"]``), once per process (and
again after ``override_settings`` in tests) into the :class:`BounceState` that
:func:`get_state` returns; nothing is parsed per request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.messages import constants as message_levels
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import DEFAULT_NOTIFY_KINDS
from bounce_middleware.model import BounceKind
from bounce_middleware.settings import Converter, as_kinds, parse_settings, read_settings

SETTING = "BOUNCE_MIDDLEWARE"

#: Dotted name of the handler used when ``HANDLERS`` is not given.
DEFAULT_HANDLER = "bounce_middleware.adapters.django.handlers.notify_users"
#: Dotted name of the store used when ``STORE`` is not given.
DEFAULT_STORE = "bounce_middleware.adapters.django.store.default_store"
#: The message level of the notice unless ``NOTICE_CATEGORY`` says otherwise.
DEFAULT_NOTICE_CATEGORY = "warning"

DEFAULT_NOTICE_MESSAGE = _(
    "Our e-mail to {email} could not be delivered: {description} "
    'Please <a href="{account_url}">check your e-mail address</a>.'
)
DEFAULT_NOTICE_MESSAGE_NO_LINK = _(
    "Our e-mail to {email} could not be delivered: {description} Please check your e-mail address."
)

# Django's message levels by name, as NOTICE_CATEGORY names them.
_LEVELS = {name.lower(): level for name, level in message_levels.DEFAULT_LEVELS.items()}


def _text(value: Any) -> str | Promise:
    if isinstance(value, str | Promise):
        return value
    raise TypeError("expected a string")


def _optional_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError("expected a string or None")


def _category(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in _LEVELS:
        return value.strip().lower()
    raise TypeError(f"expected a message level among: {', '.join(_LEVELS)}")


#: The adapter's own keys, read by the same reader as the middleware's.
ADAPTER_KEYS: Mapping[str, Converter] = {
    "notify_kinds": as_kinds,
    "notice_message": _text,
    "notice_category": _category,
    "account_url": _optional_text,
}


@dataclass(frozen=True, slots=True)
class BounceState:
    """The project's ``BOUNCE_MIDDLEWARE``, read and checked (see :func:`get_state`)."""

    middleware: Mapping[str, Any]  #: keyword arguments for ``BounceMiddleware``
    notify_kinds: frozenset[BounceKind]
    notice_message: str | Promise | None  #: None: the default, with or without a link
    notice_category: str  #: a message level name: debug, info, success, warning, error
    account_url: str | None

    @property
    def notice_level(self) -> int:
        """``notice_category`` as the ``django.contrib.messages`` level."""
        return _LEVELS[self.notice_category]


def flat_settings(raw: object) -> dict[str, Any]:
    """``{"ROUTES": ...}`` as the reader's ``{"bounce.routes": ...}``, with the adapter's defaults.

    A provider's dict (``"SENDGRID": {...}``) stays one key: the reader takes
    its options from it.
    """
    if raw is None:
        raise ConfigurationError(
            f"settings.{SETTING} is not set; it needs ROUTES (or PATH and CREDENTIALS "
            "for one Postmark route)"
        )
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


def spell(key: str) -> str:
    """A key as Django users write it: ``path`` is ``BOUNCE_MIDDLEWARE["PATH"]``.

    A provider's option (``sendgrid.public_key``) is a key of the provider's
    dict: ``BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIC_KEY"]``.
    """
    return SETTING + "".join(f'["{part.upper()}"]' for part in key.split("."))


def read_state(raw: object) -> BounceState:
    """Read a ``BOUNCE_MIDDLEWARE`` value; raise ``ConfigurationError`` naming the bad key."""
    return state_of(parse_settings(flat_settings(raw), "bounce.", extra=ADAPTER_KEYS, spell=spell))


def read_parts(raw: object) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``BOUNCE_MIDDLEWARE`` read without building the routes' providers (for the checks).

    See :func:`bounce_middleware.settings.read_settings`; :func:`state_of`
    makes the state once ``routes`` holds providers.
    """
    return read_settings(flat_settings(raw), "bounce.", extra=ADAPTER_KEYS, spell=spell)


def state_of(parsed: dict[str, Any]) -> BounceState:
    """The state of read settings: the adapter's keys taken out, the rest the middleware's."""
    return BounceState(
        middleware=parsed,
        notify_kinds=parsed.pop("notify_kinds", DEFAULT_NOTIFY_KINDS),
        notice_message=parsed.pop("notice_message", None),
        notice_category=parsed.pop("notice_category", DEFAULT_NOTICE_CATEGORY),
        account_url=parsed.pop("account_url", None),
    )


@functools.cache
def get_state() -> BounceState:
    """The project's configuration, read once; ``ImproperlyConfigured`` if it is wrong."""
    try:
        return read_state(getattr(settings, SETTING, None))
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def clear_state(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: forget the cached configuration."""
    if setting == SETTING:
        get_state.cache_clear()
