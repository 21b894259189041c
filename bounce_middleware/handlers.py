"""Handler registrations: a callable, a stable name, and the kinds it wants."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import ConfigurationError
from .model import Bounce, BounceKind

HandlerFunc = Callable[[Bounce], object]


@dataclass(frozen=True, slots=True)
class Handler:
    """A handler callable with the name its completion is recorded under.

    ``kinds`` of None means every kind. The name must stay the same across
    restarts, since a store records completion by name.
    """

    func: HandlerFunc
    name: str
    kinds: frozenset[BounceKind] | None = None

    def wants(self, bounce: Bounce) -> bool:
        """True when this handler subscribed to the bounce's kind."""
        return self.kinds is None or bounce.kind in self.kinds


def default_name(func: HandlerFunc) -> str:
    """``module.qualname`` of a function, or of the class of a callable object."""
    target: object = func if hasattr(func, "__qualname__") else type(func)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def make_handler(
    func: HandlerFunc | Handler,
    *,
    kinds: Iterable[BounceKind | str] | None = None,
    name: str | None = None,
) -> Handler:
    """Build a :class:`Handler`, validating kinds (given as enum members or their values)."""
    if isinstance(func, Handler):
        if kinds is None and name is None:
            return func
        return make_handler(
            func.func,
            kinds=func.kinds if kinds is None else kinds,
            name=name or func.name,
        )
    if not callable(func):
        raise ConfigurationError(f"handler {func!r} is not callable")
    wanted = None
    if kinds is not None:
        if isinstance(kinds, str):
            kinds = [kinds]
        try:
            wanted = frozenset(BounceKind(k) for k in kinds)
        except ValueError as exc:
            known = ", ".join(k.value for k in BounceKind)
            raise ConfigurationError(f"{exc}; kinds are: {known}") from None
    name = name or default_name(func)
    if not name.isprintable() or name != name.strip():
        # Stores keep names as text, some one per line: no line breaks or control characters.
        raise ConfigurationError(f"handler name {name!r} must be printable, without edge spaces")
    return Handler(func, name, wanted)
