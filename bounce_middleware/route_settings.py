"""Routes in flat settings: ``routes``, and each provider built from its own keys.

:func:`~bounce_middleware.settings.parse_settings` reads the keys; here a
route's provider (an object, a registered name, a dotted name) is found, and
a provider named in settings is built from its options, typed by its class's
``options`` table, with errors that name the keys as the user wrote them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .converters import Converter, as_bool, as_credentials, as_float, as_int, as_list, resolve
from .errors import ConfigurationError
from .text import article

__all__ = ["OPTION_TYPES", "ProviderSettings", "as_routes"]


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
# A None there is an unset environment variable, not "use the default": say so.
_NEEDS_A_VALUE = frozenset({"list", "credentials", "str"})


class _Named(NamedTuple):
    """A route's provider named in settings (registered name or dotted class), not yet built."""

    name: str
    cls: Any


def _spelled_by_default(key: str) -> str:
    return "'bounce." + key + "'"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A route's provider to build from settings: its class and the options given for it.

    ``given`` maps each option to ``(value, key)``, the key as the user wrote
    it; ``shown(key)`` spells any other key (``"sendgrid.public_key"``) the
    framework's way, for error messages. A provider on several routes is one
    ``ProviderSettings``, built once.
    """

    name: str
    cls: Any
    given: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    shown: Callable[[str], str] = _spelled_by_default

    def key(self, option: str) -> str:
        """The setting of ``option``: as the user wrote it, else in the framework's spelling."""
        entry = self.given.get(option)
        return entry[1] if entry is not None else self.shown(f"{self.name}.{option}")

    def build(self) -> Any:
        """The provider; :class:`ConfigurationError` names the keys, never a secret."""
        table: Mapping[str, str] = getattr(self.cls, "options", None) or {}
        keys = ", ".join(self.key(option) for option in table) or "none"
        try:
            parameters = inspect.signature(self.cls).parameters.values()
        except (TypeError, ValueError):
            parameters = ()  # type: ignore[assignment]  # a builtin: nothing known required
        for p in parameters:
            if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in self.given:
                raise ConfigurationError(f"the {self.name} route needs setting {self.key(p.name)}")
        kwargs: dict[str, Any] = {}
        for option, (value, spelled) in self.given.items():
            kind = table.get(option)
            if kind is None:
                raise ConfigurationError(
                    f"unknown setting {spelled} for provider {self.name}; its settings: {keys}"
                )
            if value is None and kind in _NEEDS_A_VALUE:
                raise ConfigurationError(
                    f"setting {spelled} is None — is the environment variable that "
                    "should hold it set?"
                )
            try:
                kwargs[option] = OPTION_TYPES[kind](value)
            except (ConfigurationError, TypeError, ValueError) as exc:
                raise ConfigurationError(f"setting {spelled} is invalid: {exc}") from None
        try:
            return self.cls(**kwargs)
        except (ConfigurationError, TypeError, ValueError) as exc:
            # A provider's ConfigurationError never quotes a secret; other errors might.
            reason = str(exc)
            if not isinstance(exc, ConfigurationError):
                reason = _scrub(reason, self.given.values())
            raise ConfigurationError(
                f"the {self.name} route is refused: {reason} (its settings: {keys})"
            ) from None


def _scrub(message: str, given: Any) -> str:
    """``message`` without any string given as an option value: it may be a secret."""
    for value, _ in given:
        texts = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        for text in texts:
            if isinstance(text, str) and len(text) >= 4 and text in message:
                message = message.replace(text, "<hidden>")
    return message


def as_routes(value: Any) -> dict[str, Any]:
    """``{path: provider}``, or lines of ``path provider`` (``/hooks/sendgrid sendgrid``).

    A provider is an object, a registered name (``"sendgrid"``, any case) or
    a dotted name. A registered name, or a dotted name of a provider class
    with an ``options`` table, is returned as ``(name, class)``, to be built
    from its settings; any other dotted name is imported (a provider object,
    or a factory called with no arguments).
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
        routes[path] = _route_provider(path, provider)
    if not routes:
        raise TypeError("no route given; e.g. {'/hooks/postmark': 'postmark'}")
    names: dict[str, Any] = {}
    for provider in routes.values():
        if isinstance(provider, _Named) and names.setdefault(provider.name, provider) != provider:
            raise TypeError(f"two different provider classes are named {provider.name!r}")
    return routes


def _route_provider(path: str, provider: Any) -> Any:
    from .providers import provider_class

    if isinstance(provider, str):
        text = provider.strip()
        if "." not in text and ":" not in text:
            try:
                return _Named(text.lower(), provider_class(text.lower()))
            except ImportError as exc:  # a provider module whose dependency is missing
                raise ConfigurationError(f"provider {text!r} cannot be imported: {exc}") from None
        target: Any = resolve(text)
        name = getattr(target, "name", None)
        # A provider class with an options table is built from its settings, like a name.
        if (
            isinstance(target, type)
            and isinstance(name, str)
            and isinstance(getattr(target, "options", None), Mapping)
        ):
            return _Named(name, target)
        if isinstance(target, type) or not hasattr(target, "parse"):
            target = target()
        return target
    if not hasattr(provider, "parse"):
        raise TypeError(
            f"the route {path!r} needs a provider name such as 'sendgrid', a dotted "
            f"name or a provider object, not {article(type(provider).__name__)}"
        )
    return provider
