"""Handler registrations: a callable, a stable name, and the kinds it wants.

Also the vocabulary every framework adapter shares (:data:`DEFAULT_NOTIFY_KINDS`,
:data:`NOTICE_METHODS`), defined once here.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, StoreUnavailable
from .model import Bounce, BounceKind
from .store import Claim, ClaimState
from .text import loggable

if TYPE_CHECKING:
    from .store import Store

logger = logging.getLogger("bounce_middleware")

#: An ordinary handler: called as ``func(bounce)``; its return value is ignored.
HandlerFunc = Callable[[Bounce], object]
#: A transactional handler (``func.transactional = True``): called as
#: ``func(bounce, delivery)``, returns True when it recorded its own completion.
TransactionalHandlerFunc = Callable[[Bounce, "Delivery"], bool]

#: The kinds that notify users by default in every adapter: a hard bounce only
#: (telling someone who marked a message as spam that "your e-mail bounced" is wrong).
DEFAULT_NOTIFY_KINDS: frozenset[BounceKind] = frozenset({BounceKind.HARD})

#: The request methods on which every adapter shows (and marks shown) a user's notice.
#: Not HEAD: its response has no body, so the notice would be lost. Not POST: it may be
#: the very request that changes the address.
NOTICE_METHODS: frozenset[str] = frozenset({"GET"})


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a transactional handler needs to record its own completion.

    A handler whose callable has ``transactional = True`` is called as
    ``func(bounce, delivery)``. It returns True when it recorded its completion
    inside its own database transaction, with its own writes: by calling
    ``delivery.store.complete(delivery.claim, delivery.name,
    finished=delivery.finishes)`` there. The middleware then writes nothing
    more for it, and the handler's writes and its completion commit together
    (exactly once). It returns False to leave the recording to the middleware,
    as for any handler (e.g. when ``store`` is None, or not its database).
    """

    #: The claim of this delivery (``claim.key`` is the event's key).
    claim: Claim
    #: The middleware's store, or None when it runs without one.
    store: Store | None
    #: The handler's registered name: the completion is recorded under it.
    name: str
    #: True when this is the last handler the event wants and none failed before
    #: it: recording its completion must then also end the claim (``finished=True``).
    finishes: bool


@dataclass(frozen=True, slots=True)
class Handler:
    """A handler callable with the name its completion is recorded under.

    ``kinds`` of None means every kind. The name must stay the same across
    restarts, since a store records completion by name. ``transactional``
    mirrors the callable's ``transactional`` attribute (see :class:`Delivery`).
    """

    #: A :data:`HandlerFunc`, or a :data:`TransactionalHandlerFunc` when ``transactional``.
    func: Callable[..., object]
    name: str
    kinds: frozenset[BounceKind] | None = None
    transactional: bool = False

    def wants(self, bounce: Bounce) -> bool:
        """True when this handler subscribed to the bounce's kind."""
        return self.kinds is None or bounce.kind in self.kinds


def default_name(func: object) -> str:
    """``module.qualname`` of a function, or of the class of a callable object."""
    target: object = func if hasattr(func, "__qualname__") else type(func)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def make_handler(
    func: HandlerFunc | TransactionalHandlerFunc | Handler,
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
    # Only the literal True: a truthy attribute of some other meaning must not change
    # how the handler is called.
    transactional = getattr(func, "transactional", False) is True
    return Handler(func, name, wanted, transactional)


# -- running handlers (the middleware's dispatch) ------------------------------------

#: What running one handler came to: it raised, it succeeded (the middleware records
#: its completion), or it succeeded and recorded its completion itself (transactional).
FAILED, SUCCEEDED, RECORDED = "failed", "succeeded", "recorded"

#: Pauses between the tries of a completion write that failed after its handler
#: succeeded (3 tries in ~0.3 s): otherwise the redelivery would run the handler again.
COMPLETION_RETRY_DELAYS = (0.1, 0.2)


def _await(awaitable: Any) -> Any:
    # A plain function that returned a coroutine (a functools.wraps decorator around an
    # async def): run it, as an async def handler is run, rather than count it done unrun.
    from .asgi_bridge import call_async

    async def result() -> Any:
        return await awaitable

    return call_async(result)


def run_handler(
    handler: Handler, bounce: Bounce, store: Store | None, claim: Claim | None, finishes: bool
) -> str:
    """Call one handler, logging its exception if any; :data:`FAILED`, :data:`SUCCEEDED`
    or :data:`RECORDED`."""
    try:
        if not handler.transactional:
            if inspect.isawaitable(result := handler.func(bounce)):
                _await(result)
            return SUCCEEDED
        if claim is None:  # no store: nothing to record, but the same call shape
            claim = Claim(bounce.key, ClaimState.NEW)
        delivery = Delivery(claim, store, handler.name, finishes)
        done = handler.func(bounce, delivery)
        if inspect.isawaitable(done):
            done = _await(done)
    except Exception:
        # The traceback is the user's own code; the bounce itself is not logged.
        logger.exception(
            "bounce %s: handler %s failed", loggable(bounce.key), loggable(handler.name)
        )
        return FAILED
    return RECORDED if done is True and store is not None else SUCCEEDED


def record_completion(store: Store, claim: Claim, name: str, *, finished: bool) -> None:
    """``store.complete(...)``, retried briefly: a lost completion reruns the handler.

    Raises the last :class:`StoreUnavailable` when every try failed.
    """
    for delay in COMPLETION_RETRY_DELAYS:
        try:
            store.complete(claim, name, finished=finished)
            return
        except StoreUnavailable as exc:
            logger.warning(
                "bounce %s: could not record handler %s (%s); retrying in %.1f s",
                loggable(claim.key),
                loggable(name),
                loggable(exc),
                delay,
            )
        time.sleep(delay)
    store.complete(claim, name, finished=finished)
