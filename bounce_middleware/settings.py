"""The one reader that turns flat configuration into ``BounceMiddleware`` arguments.

Pyramid ``.ini`` settings, Flask config keys and Django's settings dict are
all translated to a flat mapping and read here, so every adapter accepts the
same keys with the same meaning and the same error messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .converters import (
    CELERY_KEYS,
    Converter,
    as_bool,
    as_credentials,
    as_float,
    as_handoff,
    as_int,
    as_kinds,
    as_list,
    as_store,
    celery_handoff,
    resolve,
)
from .errors import ConfigurationError
from .handlers import make_handler
from .route_settings import OPTION_TYPES, ProviderSettings, _Named, as_routes
from .text import article

__all__ = [
    "MIDDLEWARE_KEYS",
    "OPTION_TYPES",
    "Converter",
    "ProviderSettings",
    "as_bool",
    "as_credentials",
    "as_float",
    "as_int",
    "as_kinds",
    "as_list",
    "as_routes",
    "as_store",
    "parse_settings",
    "read_settings",
    "resolve",
]


def _handlers(value: Any) -> list[Any]:
    return [make_handler(resolve(item)) for item in as_list(value)]


# The middleware refuses these too; checked here, the error names the key as written.
def _bytes(value: Any) -> int:
    size = as_int(value)
    if size < 1:
        raise ValueError("expected a positive number of bytes")
    return size


def _seconds(value: Any) -> int:
    seconds = as_int(value)
    if seconds < 0:
        raise ValueError("expected a number of seconds, 0 or more")
    return seconds


def _positive_seconds(value: Any) -> float:
    seconds = as_float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError("expected a positive number of seconds")
    return seconds


#: Every key the middleware itself reads, with its converter (``routes`` has its own reader).
MIDDLEWARE_KEYS: Mapping[str, Converter] = {
    "path": str,
    "credentials": as_credentials,
    "handlers": _handlers,
    "store": as_store,
    "max_body_size": _bytes,
    "realm": str,
    "retry_after": _seconds,
    "lease_seconds": _positive_seconds,
    "handoff": as_handoff,
    **CELERY_KEYS,
}

# Keys of version 1 that make one Postmark route when ``routes`` is not given.
_SHORTHAND = ("path", "credentials", "realm")


def parse_settings(
    settings: Mapping[str, Any],
    prefix: str = "bounce.",
    extra: Mapping[str, Converter] | None = None,
    *,
    spell: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Read every ``prefix``-ed key of ``settings`` into constructor keyword arguments.

    Keys (after the prefix): ``routes`` (``{path: provider}``, or lines of
    ``path provider``; a provider is a registered name such as ``sendgrid``,
    a dotted name or an object); each named provider's options, typed by its
    class's ``options`` table, as ``<name>.<option>`` (``sendgrid.public_key``),
    ``<name>_<option>``, or ``<name>`` holding a mapping of options;
    ``handlers`` (dotted names or callables); ``store`` (a URL like
    ``sqlite:///bounces.sqlite3``, or a dotted name); ``max_body_size``,
    ``retry_after`` and ``lease_seconds``; ``celery_app`` (a dotted name:
    hand events to Celery) with ``celery_queue``, ``celery_max_retries``,
    ``celery_retry_backoff``, ``celery_retry_backoff_max``,
    ``celery_retry_jitter``, ``celery_sweep_older_than`` and
    ``celery_publish_retries`` (see
    :class:`~bounce_middleware.celery_tasks.CeleryHandoff`), or ``handoff``. Version 1's ``path``,
    ``credentials`` (a list, or one string of whitespace/newline separated
    ``user:password`` entries) and ``realm`` are one Postmark route (its
    ``provider`` key may still say ``postmark``). ``extra`` adds an adapter's
    own keys, returned in the same dict.

    An unknown key, or a value that does not convert, is a
    :class:`ConfigurationError` naming the key and never quoting a secret.
    Keys without the prefix are ignored.

    ``spell(key)`` names a key (given without prefix, lower case:
    ``"max_body_size"``; a provider's option as ``"sendgrid.public_key"``)
    the way the user writes it, for error messages: Flask passes
    ``lambda key: "BOUNCE_" + key.upper().replace(".", "_")``, Django spells
    ``sendgrid.public_key`` as ``BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIC_KEY"]``.
    The default is ``prefix + key``. A spelled name is shown in single
    quotes unless it holds quotes itself. An option given in a mapping is
    named as its mapping's key followed by ``["option"]``.
    """
    result, routes = read_settings(settings, prefix, extra, spell=spell)
    if routes is not None:
        built: dict[str, Any] = {}
        for path, provider in routes.items():
            if isinstance(provider, ProviderSettings):
                if provider.name not in built:
                    built[provider.name] = provider.build()
                provider = built[provider.name]
            routes[path] = provider
        result["routes"] = routes
    return result


def read_settings(
    settings: Mapping[str, Any],
    prefix: str = "bounce.",
    extra: Mapping[str, Converter] | None = None,
    *,
    spell: Callable[[str], str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`parse_settings` without building the routes' providers.

    Returns the converted keys (without ``routes``) and the routes (None for
    version 1's one Postmark route of ``path``/``credentials``), where each
    provider named in settings is a :class:`ProviderSettings` to
    :meth:`~ProviderSettings.build`: Django's checks report each route's own
    problem this way.
    """
    from .providers import PROVIDERS

    known = {**MIDDLEWARE_KEYS, **(extra or {})}

    def spelled(key: str) -> str:
        return spell(key) if spell is not None else prefix + key

    def shown(key: str) -> str:
        name = spelled(key)
        return name if "'" in name or '"' in name else f"'{name}'"

    # Lower case after the prefix; the key as written is kept for messages.
    ours = {
        k[len(prefix) :].lower(): (k, raw) for k, raw in settings.items() if k.startswith(prefix)
    }
    routes = None
    if "routes" in ours:
        try:
            routes = as_routes(ours.pop("routes")[1])
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"setting {shown('routes')} is invalid: {exc}") from None
    classes = {p.name: p.cls for p in (routes or {}).values() if isinstance(p, _Named)}
    # Longest first: "amazon_ses_x" is amazon_ses's option x.
    provider_names = sorted({*PROVIDERS, *classes}, key=len, reverse=True)

    result: dict[str, Any] = {}
    options: dict[str, dict[str, tuple[Any, str]]] = {}
    for key, (full_key, raw) in ours.items():
        if key in known:
            try:
                result[key] = known[key](raw)
            except (ConfigurationError, TypeError, ValueError) as exc:
                raise ConfigurationError(f"setting {shown(key)} is invalid: {exc}") from None
        elif key == "provider":
            _version_one_provider(raw, routes is not None, shown)
        elif (name := _provider_of(key, provider_names)) is not None:
            given = options.setdefault(name, {})
            for option, entry in _options_of(key, name, raw, spelled, shown):
                if option in given:
                    raise ConfigurationError(
                        f"settings {given[option][1]} and {entry[1]} both set the {name} "
                        f"option {option}; keep one"
                    )
                given[option] = entry
        else:
            every = dict.fromkeys((*MIDDLEWARE_KEYS, "routes", *(extra or {})))
            names = ", ".join(spelled(k) for k in every)
            unknown = shown(key) if spell is not None else repr(full_key)
            raise ConfigurationError(
                f"unknown setting {unknown}; known: {names}, and provider options "
                f"such as {shown('sendgrid.public_key')}"
            )
    celery_handoff(result, shown)
    if routes is not None:
        for shorthand in _SHORTHAND:
            if shorthand in result:
                instead = (
                    "make the path a key of it"
                    if shorthand == "path"
                    else f"give {shown('postmark.' + shorthand)}"
                )
                raise ConfigurationError(
                    f"setting {shown(shorthand)} is for one Postmark route without "
                    f"{shown('routes')}; with routes, {instead}"
                )
        # One ProviderSettings per name: a provider on two paths is built once.
        named = {
            name: ProviderSettings(name, cls, options.pop(name, {}), shown)
            for name, cls in classes.items()
        }
        for path, provider in routes.items():
            if isinstance(provider, _Named):
                routes[path] = named[provider.name]
    elif "path" in result or "credentials" in result:
        for required in ("path", "credentials"):
            if required not in result:
                raise ConfigurationError(
                    f"setting {shown(required)} is required for the one Postmark route "
                    f"of {shown('path')} and {shown('credentials')}"
                )
    else:
        raise ConfigurationError(
            f"setting {shown('routes')} is required (or, for one Postmark route, "
            f"{shown('path')} and {shown('credentials')})"
        )
    if options:
        name, given = next(iter(options.items()))
        raise ConfigurationError(
            f"setting {next(iter(given.values()))[1]} is for provider {name}, "
            f"but no route uses it; add it to {shown('routes')}"
        )
    return result, routes


def _options_of(
    key: str,
    name: str,
    raw: Any,
    spelled: Callable[[str], str],
    shown: Callable[[str], str],
) -> list[tuple[str, tuple[Any, str]]]:
    """``(option, (value, key as written))`` of one provider setting, flat or a mapping."""
    if key != name:
        return [(key[len(name) + 1 :], (raw, shown(key)))]
    if not isinstance(raw, Mapping):
        # Never the value: it may be the secret, put where its mapping belongs.
        raise ConfigurationError(
            f"setting {shown(key)} must map the {name} route's option names to values, "
            f"not be {article(type(raw).__name__)}"
        )
    return [
        (str(option).lower(), (value, f'{spelled(key)}["{option}"]'))
        for option, value in raw.items()
    ]


def _version_one_provider(raw: Any, has_routes: bool, shown: Callable[[str], str]) -> None:
    """Version 1's ``provider`` key: harmless as ``postmark`` beside ``path``; else explained."""
    if has_routes:
        raise ConfigurationError(
            f"setting {shown('provider')} is version 1's; with {shown('routes')}, "
            "each route names its provider"
        )
    if not (isinstance(raw, str) and raw.strip().lower() == "postmark"):
        raise ConfigurationError(
            f"setting {shown('provider')} may only say postmark (the route of "
            f"{shown('path')} and {shown('credentials')}); for another provider give "
            f"{shown('routes')}"
        )


def _provider_of(key: str, names: list[str]) -> str | None:
    """The provider whose setting ``key`` is (``sendgrid``, ``sendgrid.public_key``), if any."""
    for name in names:
        if key == name or key.startswith((name + ".", name + "_")):
            return name
    return None
