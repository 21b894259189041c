"""System checks for ``BOUNCE_MIDDLEWARE`` and ``MIDDLEWARE`` (ids ``bounce_middleware.*``).

=========  ===============================================================
id         problem
=========  ===============================================================
``E001``   ``CREDENTIALS`` missing, None (an unset environment variable), empty,
           or an entry that is not a ``"user:password"`` string
``E002``   ``BOUNCE_MIDDLEWARE`` missing, or a key unknown or malformed
``E003``   a handler in ``HANDLERS`` cannot be imported or is not callable
``E004``   Django's URLconf also serves ``PATH`` (the webhook hides that view)
``W001``   ``BounceNoticeMiddleware`` is not in ``MIDDLEWARE``
``W002``   ``BounceNoticeMiddleware`` comes before the auth or messages middleware
``W003``   ``ACCOUNT_URL`` is neither a path nor a URL name that reverses
``W004``   a weak credential: a password under 16 characters, or one published
           in this project's examples (one warning per credential)
=========  ===============================================================

A check never raises: whatever the settings hold, ``manage.py check`` reports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from bounce_middleware.auth import BasicAuth, credential_warnings
from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import make_handler
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.settings import resolve as resolve_dotted

from .conf import DEFAULT_HANDLER, SETTING, read_state
from .handlers import UserBounceHandler

_E001 = "bounce_middleware.E001"
NOTICE_MIDDLEWARE = "bounce_middleware.adapters.django.middleware.BounceNoticeMiddleware"
_NEEDED_BEFORE = (
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)


# Stands in for CREDENTIALS (checked on their own) when the other keys are read:
# long and unpublished, so that the middleware built below logs no warning about it.
_PLACEHOLDER_CREDENTIAL = "check:" + "placeholder-" * 3


def _noop_app(environ: Any, start_response: Any) -> list[bytes]:  # pragma: no cover
    return []


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """Check ``BOUNCE_MIDDLEWARE`` the way the WSGI wrapper will read it."""
    raw = getattr(settings, SETTING, None)
    if not isinstance(raw, Mapping):
        return [
            Error(
                f"settings.{SETTING} is missing or not a dict.",
                hint=f'Set {SETTING} = {{"PATH": "/postmark/bounce", "CREDENTIALS": [...]}}.',
                id="bounce_middleware.E002",
            )
        ]
    upper = {str(k).upper(): v for k, v in raw.items()}
    errors = _check_credentials(upper)
    handlers = upper.get("HANDLERS", [DEFAULT_HANDLER])
    handler_errors = _check_handlers(handlers)
    errors += handler_errors
    # The other keys, through the one reader (handlers reported above).
    rest = {k: v for k, v in raw.items() if str(k).upper() not in ("HANDLERS", "CREDENTIALS")}
    try:
        state = read_state({**rest, "CREDENTIALS": [_PLACEHOLDER_CREDENTIAL], "HANDLERS": []})
        BounceMiddleware(_noop_app, **state.middleware)
    except (ConfigurationError, TypeError, ValueError) as exc:
        return [*errors, Error(str(exc), id="bounce_middleware.E002")]
    errors += _check_path(state.middleware["path"])
    errors += _check_account_url(state.account_url)
    return errors


def _check_credentials(upper: Mapping[str, object]) -> list[CheckMessage]:
    hint = 'List at least one "user:password"; the endpoint never runs unauthenticated.'
    if "CREDENTIALS" not in upper:
        return [Error(f'{SETTING}["CREDENTIALS"] is missing.', hint=hint, id=_E001)]
    credentials = upper["CREDENTIALS"]
    try:
        BasicAuth(credentials)  # type: ignore[arg-type]  # anything a settings file holds
    except (ConfigurationError, TypeError, ValueError) as exc:
        return [Error(f'{SETTING}["CREDENTIALS"] is invalid: {exc}', hint=hint, id=_E001)]
    return [
        Warning(
            f'{SETTING}["CREDENTIALS"]: {line}',
            hint="Anyone who knows or guesses it can post bounces that flag your users.",
            id="bounce_middleware.W004",
        )
        for line in credential_warnings(credentials)
    ]


def _check_handlers(handlers: object) -> list[CheckMessage]:
    if isinstance(handlers, str):
        handlers = handlers.split()
    if not isinstance(handlers, Sequence):
        return [Error(f'{SETTING}["HANDLERS"] must be a list', id="bounce_middleware.E003")]
    errors: list[CheckMessage] = []
    for item in handlers:
        try:
            make_handler(resolve_dotted(item))
        except (TypeError, ConfigurationError) as exc:
            errors.append(
                Error(
                    f'{SETTING}["HANDLERS"] entry {item!r} is unusable: {exc}',
                    hint="Give a callable or the dotted name of one.",
                    id="bounce_middleware.E003",
                )
            )
    return errors


def _check_path(path: str) -> list[CheckMessage]:
    try:
        match = resolve(path)
    except (Resolver404, ImproperlyConfigured, ImportError):
        # Resolver404 is the good case; a broken URLconf is reported by Django's own checks.
        return []
    return [
        Error(
            f'{SETTING}["PATH"] {path!r} is also served by the view {match.view_name!r}; '
            "the webhook endpoint would hide it.",
            hint="Choose a PATH that no URL pattern matches.",
            id="bounce_middleware.E004",
        )
    ]


def _check_account_url(target: str | None) -> list[CheckMessage]:
    if not target or "/" in target:
        return []
    try:
        reverse(target)
    except NoReverseMatch:
        return [
            Warning(
                f'{SETTING}["ACCOUNT_URL"] {target!r} is not a URL name that reverses '
                "without arguments; the notice will have no link.",
                hint="Give a URL name or a path such as '/account/'.",
                id="bounce_middleware.W003",
            )
        ]
    return []


def _notifies() -> bool:
    raw = getattr(settings, SETTING, None)
    if not isinstance(raw, Mapping):
        return False
    handlers = {str(k).upper(): v for k, v in raw.items()}.get("HANDLERS", [DEFAULT_HANDLER])
    if isinstance(handlers, str):
        handlers = handlers.split()
    try:
        return any(isinstance(resolve_dotted(item), UserBounceHandler) for item in handlers)
    except (TypeError, ConfigurationError):
        return False  # reported by check_settings


def check_middleware(**kwargs: Any) -> list[CheckMessage]:
    """Check that ``BounceNoticeMiddleware`` is installed after auth and messages.

    Only when a :class:`~.handlers.UserBounceHandler` (``notify_users``) is among
    the handlers: without one there is no notice.
    """
    if not _notifies():
        return []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if NOTICE_MIDDLEWARE not in middleware:
        return [
            Warning(
                f"{NOTICE_MIDDLEWARE} is not in MIDDLEWARE; users will not see bounce notices.",
                hint="Add it after AuthenticationMiddleware and MessageMiddleware.",
                id="bounce_middleware.W001",
            )
        ]
    position = middleware.index(NOTICE_MIDDLEWARE)
    late = [name for name in _NEEDED_BEFORE if name in middleware[position:]]
    if late:
        return [
            Warning(
                f"{NOTICE_MIDDLEWARE} comes before {', '.join(late)} in MIDDLEWARE.",
                hint="Move it after AuthenticationMiddleware and MessageMiddleware.",
                id="bounce_middleware.W002",
            )
        ]
    return []
