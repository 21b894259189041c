"""System checks for ``BOUNCE_MIDDLEWARE`` and ``MIDDLEWARE`` (ids ``bounce_middleware.*``).

=========  ===============================================================
id         problem
=========  ===============================================================
``E001``   a route cannot authenticate: ``CREDENTIALS`` (of the ``PATH`` route)
           missing, None (an unset environment variable), empty, or an entry
           that is not a ``"user:password"`` string; or a ``ROUTES`` provider's
           own settings (``BOUNCE_MIDDLEWARE["SENDGRID"]``...) missing, unknown
           or refused by the provider (one error per provider)
``E002``   ``BOUNCE_MIDDLEWARE`` missing, or a key unknown or malformed
           (``ROUTES`` itself included: a path, an unknown provider name)
``E003``   a handler in ``HANDLERS`` cannot be imported or is not callable
``E004``   Django's URLconf also serves a route's path (the webhook hides that
           view); one error per path
``W001``   ``BounceNoticeMiddleware`` is not in ``MIDDLEWARE``
``W002``   ``BounceNoticeMiddleware`` comes before the auth or messages middleware
``W003``   ``ACCOUNT_URL`` is neither a path nor a URL name that reverses
``W004``   a weak credential: a password under 16 characters, or one published
           in this project's examples (one warning per credential, in
           ``CREDENTIALS`` or any route provider's ``CREDENTIALS``)
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
from bounce_middleware.providers import Postmark
from bounce_middleware.settings import ProviderSettings
from bounce_middleware.settings import resolve as resolve_dotted

from .conf import DEFAULT_HANDLER, SETTING, BounceState, read_parts, read_state, state_of
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
                hint=f'Set {SETTING} = {{"ROUTES": {{"/hooks/postmark": "postmark"}}, '
                '"POSTMARK": {"CREDENTIALS": [...]}}.',
                id="bounce_middleware.E002",
            )
        ]
    upper = {str(k).upper(): v for k, v in raw.items()}
    errors = _check_handlers(upper.get("HANDLERS", [DEFAULT_HANDLER]))
    # The other keys, through the one reader (handlers reported above).
    rest = {k: v for k, v in raw.items() if str(k).upper() != "HANDLERS"}
    rest["HANDLERS"] = []
    if "ROUTES" in upper:
        state, paths = _check_routes(rest, errors)
        where = f'{SETTING}["ROUTES"] path'
    else:
        # Version 1's one Postmark route: CREDENTIALS are checked on their own.
        errors += _check_credentials(upper)
        rest = {k: v for k, v in rest.items() if str(k).upper() != "CREDENTIALS"}
        rest["CREDENTIALS"] = [_PLACEHOLDER_CREDENTIAL]
        try:
            state = read_state(rest)
        except (ConfigurationError, TypeError, ValueError) as exc:
            return [*errors, Error(str(exc), id="bounce_middleware.E002")]
        paths = [state.middleware["path"]]
        where = f'{SETTING}["PATH"]'
    if state is None:
        return errors
    try:
        BounceMiddleware(_noop_app, **state.middleware)
    except (ConfigurationError, TypeError, ValueError) as exc:
        return [*errors, Error(str(exc), id="bounce_middleware.E002")]
    for path in paths:
        errors += _check_path(path, where)
    errors += _check_account_url(state.account_url)
    return errors


def _check_routes(
    raw: Mapping[str, Any], errors: list[CheckMessage]
) -> tuple[BounceState | None, list[str]]:
    """Add E001/W004 per provider of ``ROUTES``; the state with the providers built, the paths.

    A provider that cannot be built is left out (a placeholder route stands in
    when none is left), so that the other keys are still checked; every
    configured path is returned, for E004.
    """
    try:
        parsed, routes = read_parts(raw)
    except (ConfigurationError, TypeError, ValueError) as exc:
        errors.append(Error(str(exc), id="bounce_middleware.E002"))
        return None, []
    assert routes is not None  # ROUTES was given
    built: dict[str, Any] = {}
    for path, provider in routes.items():
        if isinstance(provider, ProviderSettings):
            if provider.name not in built:
                paths = [p for p, other in routes.items() if other is provider]
                built[provider.name] = _build(provider, paths, errors)
            provider = built[provider.name]
        if provider is not None:
            parsed.setdefault("routes", {})[path] = provider
    parsed.setdefault("routes", {"/": Postmark(credentials=[_PLACEHOLDER_CREDENTIAL])})
    return state_of(parsed), list(routes)


def _build(provider: ProviderSettings, paths: list[str], errors: list[CheckMessage]) -> Any:
    """The provider of ``paths``, or None with its E001 added; W004 for its credentials."""
    try:
        made = provider.build()
    except (ConfigurationError, TypeError, ValueError) as exc:
        errors.append(
            Error(
                f'{SETTING}["ROUTES"] {" and ".join(map(repr, paths))}: {exc}',
                hint=f"Give the {provider.name} route its settings in "
                f"{provider.shown(provider.name)}; the endpoint never runs unauthenticated.",
                id=_E001,
            )
        )
        return None
    if "credentials" in provider.given:
        value, key = provider.given["credentials"]
        errors += [
            Warning(
                f"{key}: {line}",
                hint="Anyone who knows or guesses it can post bounces that flag your users.",
                id="bounce_middleware.W004",
            )
            for line in credential_warnings(value)
        ]
    return made


def _check_credentials(upper: Mapping[str, object]) -> list[CheckMessage]:
    hint = (
        'List at least one "user:password"; the endpoint never runs unauthenticated. '
        f'(Or give {SETTING}["ROUTES"] with each provider\'s own settings.)'
    )
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


def _check_path(path: str, where: str) -> list[CheckMessage]:
    try:
        match = resolve(path)
    except (Resolver404, ImproperlyConfigured, ImportError):
        # Resolver404 is the good case; a broken URLconf is reported by Django's own checks.
        return []
    return [
        Error(
            f"{where} {path!r} is also served by the view {match.view_name!r}; "
            "the webhook endpoint would hide it.",
            hint="Choose a path that no URL pattern matches.",
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
