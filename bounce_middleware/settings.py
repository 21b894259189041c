"""The one reader that turns flat configuration into ``BounceMiddleware`` arguments.

Pyramid ``.ini`` settings, Flask config keys and Django's settings dict are
all translated to a flat mapping and read here, so every adapter accepts the
same keys with the same meaning and the same error messages.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .auth import credential_list
from .errors import ConfigurationError
from .handlers import make_handler
from .model import BounceKind
from .store import Store, open_store

Converter = Callable[[Any], Any]


def as_list(value: Any) -> list[Any]:
    """A whitespace/newline separated string, or an iterable, as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, Iterable):
        return list(value)
    raise TypeError("expected a list or a whitespace-separated string")


def as_int(value: Any) -> int:
    """An integer, or a string of digits (``_`` allowed as in Python: ``1_048_576``)."""
    if isinstance(value, bool):
        raise TypeError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().replace("_", "").isdigit():
        return int(value.strip())
    raise TypeError("expected a whole number")


def as_float(value: Any) -> float:
    """A number, or a string holding one."""
    if isinstance(value, bool):
        raise TypeError("expected a number")
    return float(value)


def as_bool(value: Any) -> bool:
    """A bool, or one of true/false/yes/no/on/off/1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise TypeError("expected true or false")


def resolve(value: Any) -> Any:
    """Import ``package.module:attr`` or ``package.module.attr``; other values pass through.

    Raises :class:`ConfigurationError` (never ``TypeError`` or ``ImportError``)
    naming what could not be resolved.
    """
    if not isinstance(value, str):
        return value
    module_name, sep, attr = value.partition(":")
    if sep:
        return _getattr_path(_import(module_name, value), attr, value)
    parts = value.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigurationError(f"{value!r} is not a dotted name")
    # Without a colon the module/attribute boundary is unknown: try the longest module first.
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this candidate does not exist" means try a shorter one.
            if exc.name is None or not module_name.startswith(exc.name):
                raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from None
            continue
        except Exception as exc:
            # The module exists but fails to import (SyntaxError, its own ImportError...).
            raise ConfigurationError(
                f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return _getattr_path(module, ".".join(parts[split:]), value)
    raise ConfigurationError(f"cannot import any module of {value!r}")


def _import(module_name: str, value: str) -> Any:
    if not module_name:
        raise ConfigurationError(f"{value!r} is not a dotted name")
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _getattr_path(target: Any, attr: str, value: str) -> Any:
    parts = attr.split(".")
    if not all(parts):
        raise ConfigurationError(f"{value!r} is not a dotted name")
    for part in parts:
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{value!r}: {target!r} has no attribute {part!r}") from None
    return target


def as_kinds(value: Any) -> frozenset[BounceKind]:
    """Kind names (``hard soft``) as a set of :class:`BounceKind`."""
    try:
        return frozenset(BounceKind(str(k).strip()) for k in as_list(value))
    except ValueError:
        known = ", ".join(k.value for k in BounceKind)
        raise TypeError(f"expected kind names among: {known}") from None


def as_store(value: Any) -> Store:
    """A store URL (``sqlite:///bounces.sqlite3``), a dotted name of a store, or a store."""
    if isinstance(value, str) and ("://" in value or value.startswith("memory:")):
        return open_store(value)
    store = resolve(value)
    # A class (whose instances have `claim`) or a factory function: call it.
    if isinstance(store, type) or (callable(store) and not hasattr(store, "claim")):
        store = store()
    if not hasattr(store, "claim"):
        raise TypeError("expected a store URL or a store object")
    return store  # type: ignore[no-any-return]


def as_credentials(value: Any) -> list[str]:
    """``user:password`` entries (a list, or one whitespace/newline separated string), checked.

    Errors name the entry's position and the problem, never the secret.
    """
    return credential_list(value)


def _handlers(value: Any) -> list[Any]:
    return [make_handler(resolve(item)) for item in as_list(value)]


#: Every key the middleware itself reads, with its converter (``routes`` has its own reader).
MIDDLEWARE_KEYS: Mapping[str, Converter] = {
    "path": str,
    "credentials": as_credentials,
    "handlers": _handlers,
    "store": as_store,
    "max_body_size": as_int,
    "realm": str,
    "retry_after": as_int,
    "lease_seconds": as_float,
}

#: How a provider's ``options`` table names the type of each constructor keyword.
OPTION_TYPES: Mapping[str, Converter] = {
    "list": as_list,
    "credentials": as_credentials,
    "str": str,
    "bool": as_bool,
    "int": as_int,
    "float": as_float,
    "object": resolve,
}


def as_routes(value: Any) -> dict[str, Any]:
    """``{path: provider}``, or lines of ``path provider-name`` (``/hooks/sendgrid sendgrid``).

    A provider given by name (``"sendgrid"``) is built later from its options;
    a dotted name is imported (a provider object, or a factory called with no
    arguments).
    """
    if isinstance(value, str):
        words = value.split()
        if len(words) % 2:
            raise TypeError("expected lines of 'path provider', e.g. '/hooks/sendgrid sendgrid'")
        pairs = list(zip(words[::2], words[1::2], strict=True))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise TypeError("expected {path: provider} or lines of 'path provider'")
    routes: dict[str, Any] = {}
    for path, provider in pairs:
        if not isinstance(path, str) or not path.startswith("/"):
            raise TypeError(f"a route's path must start with '/', got {path!r}")
        if path in routes:
            raise TypeError(f"the path {path!r} has two routes")
        if isinstance(provider, str) and ("." in provider or ":" in provider):
            provider = resolve(provider)
            if isinstance(provider, type) or not hasattr(provider, "parse"):
                provider = provider()
        routes[path] = provider
    return routes


def build_provider(
    name: str, given: Mapping[str, tuple[Any, str]], shown: Callable[[str], str]
) -> Any:
    """The provider registered as ``name``, built from its options (value, spelled key).

    ``shown(key)`` spells a missing option's key the way the user would write it.
    """
    from .providers import provider_class

    cls = provider_class(name)
    required = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in given
    ]
    if required:
        raise ConfigurationError(f"the {name} route needs setting {shown(f'{name}.{required[0]}')}")
    table: Mapping[str, str] = getattr(cls, "options", {})
    kwargs: dict[str, Any] = {}
    for option, (value, spelled) in given.items():
        if option not in table:
            known = ", ".join(sorted(table)) or "none"
            raise ConfigurationError(
                f"unknown setting {spelled} for provider {name}; its options: {known}"
            )
        try:
            kwargs[option] = OPTION_TYPES[table[option]](value)
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"setting {spelled} is invalid: {exc}") from None
    try:
        return cls(**kwargs)
    except ConfigurationError as exc:
        raise ConfigurationError(f"provider {name} (route settings): {exc}") from None


def parse_settings(
    settings: Mapping[str, Any],
    prefix: str = "bounce.",
    extra: Mapping[str, Converter] | None = None,
    *,
    spell: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Read every ``prefix``-ed key of ``settings`` into constructor keyword arguments.

    Keys (after the prefix): ``routes`` (``{path: provider}``, or lines of
    ``path provider-name``), each named provider's options as
    ``<name>.<option>`` (``sendgrid.public_key``; also ``<name>_<option>``,
    or ``<name>`` holding a mapping of options), ``handlers`` (dotted names or
    callables), ``store`` (a URL like ``sqlite:///bounces.sqlite3``, or a
    dotted name), ``max_body_size``, ``retry_after`` and ``lease_seconds``.
    Version 1's ``path``, ``credentials`` (a list, or one string of
    whitespace/newline separated ``user:password`` entries) and ``realm`` are
    one Postmark route. ``extra`` adds an adapter's own keys, returned in the
    same dict.

    An unknown key, or a value that does not convert, is a
    :class:`ConfigurationError` naming the key. Keys without the prefix are ignored.

    ``spell(key)`` names a key (given without prefix, lower case: ``"max_body_size"``)
    the way the user wrote it, for error messages: Flask passes
    ``lambda key: "BOUNCE_" + key.upper()``, Django
    ``lambda key: f'BOUNCE_MIDDLEWARE["{key.upper()}"]'``. The default is
    ``prefix + key``. A spelled name is shown in single quotes unless it holds
    quotes itself.
    """
    from .providers import PROVIDERS

    known = {**MIDDLEWARE_KEYS, "routes": as_routes, **(extra or {})}
    # Longest first: "amazon_ses_x" is amazon_ses's option x.
    provider_names = sorted(PROVIDERS, key=len, reverse=True)

    def shown(key: str) -> str:
        name = spell(key) if spell is not None else prefix + key
        return name if "'" in name or '"' in name else f"'{name}'"

    result: dict[str, Any] = {}
    options: dict[str, dict[str, tuple[Any, str]]] = {}
    for full_key, raw in settings.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :].lower()
        if key not in known:
            name = _provider_of(key, raw, provider_names)
            if name is not None:
                given = options.setdefault(name, {})
                if key == name:
                    for option, value in raw.items():
                        given[str(option).lower()] = (value, f"{shown(key)}[{str(option)!r}]")
                else:
                    given[key[len(name) + 1 :]] = (raw, shown(key))
                continue
            names = ", ".join(spell(k) if spell is not None else prefix + k for k in known)
            unknown = shown(key) if spell is not None else repr(full_key)
            raise ConfigurationError(
                f"unknown setting {unknown}; known: {names}, and provider options "
                f"such as {shown('sendgrid.public_key')}"
            )
        try:
            result[key] = known[key](raw)
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"setting {shown(key)} is invalid: {exc}") from None
    routes = result.get("routes")
    if routes is not None:
        for shorthand in ("path", "credentials", "realm"):
            if shorthand in result:
                raise ConfigurationError(
                    f"setting {shown(shorthand)} is for one Postmark route without "
                    f"{shown('routes')}; with routes, give {shown('postmark.' + shorthand)}"
                )
        built: dict[str, Any] = {}
        for path, provider in routes.items():
            if isinstance(provider, str):
                if provider not in built:
                    built[provider] = build_provider(provider, options.pop(provider, {}), shown)
                provider = built[provider]
            routes[path] = provider
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
        name = next(iter(options))
        raise ConfigurationError(
            f"settings for provider {name} ({next(iter(options[name].values()))[1]}) "
            "but no route uses it; add it to " + shown("routes")
        )
    return result


def _provider_of(key: str, raw: Any, names: Iterable[str]) -> str | None:
    """The provider whose option ``key`` is (``sendgrid.public_key``), if any."""
    for name in names:
        if key == name and isinstance(raw, Mapping):
            return name
        if key.startswith((name + ".", name + "_")):
            return name
    return None
