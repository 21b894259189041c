"""Stores: remember each accepted bounce and which handlers completed it.

A store is what makes redeliveries safe. The middleware asks it to
:meth:`~Store.claim` an event before any handler runs; the claim says whether
the event is new, resumed after a failure, already finished, or being handled
right now by another delivery. Each handler's success is recorded with
:meth:`~Store.complete`, and :meth:`~Store.release` ends the claim.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from .errors import ConfigurationError, StoreUnavailable
from .model import Bounce, BounceKind, fold_address
from .text import loggable

# Longer than any sane handler run, shorter than Postmark's later retry gaps
# (10-15 minutes): a claim left by a crashed worker is taken over by a retry.
DEFAULT_LEASE_SECONDS = 300.0


class ClaimState(enum.Enum):
    """What a delivery may do with an event."""

    NEW = "new"  #: first delivery: run every handler
    RESUMED = "resumed"  #: earlier delivery failed or crashed: run the handlers not completed
    DONE = "done"  #: every handler completed before: run nothing, answer 200
    BUSY = "busy"  #: another delivery holds the event now: run nothing, answer 503


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of :meth:`Store.claim`; pass it back to ``complete`` and ``release``."""

    key: str
    state: ClaimState
    completed: frozenset[str] = frozenset()
    token: str = ""

    @property
    def runs_handlers(self) -> bool:
        """True when this delivery should run the handlers not yet completed."""
        return self.state in (ClaimState.NEW, ClaimState.RESUMED)


@dataclass(frozen=True, slots=True)
class Record:
    """One stored event, as ``list`` and ``replay`` show it."""

    key: str
    provider: str
    email: str
    kind: BounceKind
    type: str
    received_at: datetime
    finished: bool
    completed: frozenset[str] = frozenset()
    body: bytes = field(default=b"", repr=False)
    attempts: int = 1
    #: Why the request was refused; set only on a rejected record (see :meth:`Store.reject`).
    reason: str = ""

    @property
    def rejected(self) -> bool:
        """True for an authenticated request that was refused (400) and kept for replay."""
        return bool(self.reason)


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one claim of a batch ends (:meth:`Store.settle_many`)."""

    claim: Claim
    #: Handlers that succeeded in this delivery, to record as :meth:`Store.complete` does.
    completed: tuple[str, ...]
    #: Every handler the event wants has completed: mark it finished.
    finished: bool


@runtime_checkable
class Store(Protocol):
    """What the middleware needs from a store.

    The contract every implementation keeps (``tests/test_store.py`` checks it
    against each shipped store):

    - :meth:`claim` records the event the first time its ``key`` is seen, in
      the same atomic step as deciding who may run its handlers: of any number
      of concurrent claims of one new event, across threads and processes,
      exactly one is ``NEW``; the others are ``BUSY``. A finished event is
      ``DONE``. An unfinished one whose lease was released, or has expired
      (its worker crashed), is ``RESUMED`` by the next claim, which takes a new
      lease of ``lease_seconds``. ``completed`` names the handlers recorded so
      far; only ``NEW`` and ``RESUMED`` claims carry a token.
    - :meth:`complete` records one handler's success at once (not at release),
      so a crash later loses nothing; recording a name twice is harmless.
    - :meth:`release` marks the event finished if ``finished``, and frees the
      lease only if the claim's token still holds it: a delivery whose lease
      expired and was taken over never frees its successor's.
    - :meth:`records` lists events by first receipt, newest first; ``email``
      matches case-insensitively (Unicode case folding: the :func:`fold_address`
      of the :func:`storable` address, as recorded), ``unfinished`` keeps events
      not yet finished.
    - :meth:`reject` keeps an authenticated request whose body the parser
      refused (answered 400), once per provider and body; ``records(rejected=True)``
      lists those (and only those), ``unfinished`` then meaning not yet
      :meth:`resolve`-d. A rejected record is never a claimable event.
    - Anything a parser accepts is recorded: no length or character limit of
      the store turns an accepted event into a permanent failure. Text columns
      are unbounded; a NUL character, which some databases cannot keep in text,
      is stored as U+FFFD (:func:`storable`), the body byte for byte.
    - Any failure to read or write raises
      :class:`~bounce_middleware.errors.StoreUnavailable` (answered 503 with
      ``Retry-After``, so the provider retries); nothing else escapes.

    Optional, and kept by every shipped store: ``prune(before, *, limit)`` and
    ``counts(*, before=None)``, for retention and for the command line's counts
    (see :mod:`bounce_middleware.retention`).
    """

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        ...

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event successfully.

        ``finished`` says this was the last handler the event wanted: also end
        the claim as :meth:`release` with ``finished=True`` would, in the same
        write (one transaction fewer on every event).
        """
        ...

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        ...

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        rejected: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events, newest first, optionally filtered; ``limit=None`` for all.

        ``rejected=True`` lists the rejected records instead of the accepted events.
        """
        ...

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        """Keep an authenticated request that was refused with 400, to be replayed later.

        Idempotent: the same provider and body are kept once (the first reason
        stays). Returns the record's key, :func:`rejection_key`.
        """
        ...

    def resolve(self, key: str) -> None:
        """Mark a rejected record replayed: it is no longer listed as unfinished."""
        ...

    def claim_many(self, bounces: Sequence[Bounce], *, lease_seconds: float) -> list[Claim]:
        """:meth:`claim` each of ``bounces`` (distinct keys), in one transaction.

        The claims come back in the order of ``bounces``, each exactly what
        :meth:`claim` would have returned. A batch of a thousand events costs
        one transaction, not a thousand; if the store fails, nothing is claimed.
        """
        ...

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """End many claims in one transaction: for each, record its ``completed``
        handlers as :meth:`complete` would, then :meth:`release` it (``finished`` or not).
        """
        ...


def new_token() -> str:
    """A random claim token, so a delivery only releases its own claim."""
    return secrets.token_hex(8)


# -- pieces every store shares ---------------------------------------------------


def rejection_key(provider: str, body: bytes) -> str:
    """The key of a rejected record: the same provider and body are kept once."""
    return f"{provider}:rejected:sha256:{hashlib.sha256(body).hexdigest()}"


def storable(text: str) -> str:
    """``text`` as every database can keep it: NUL (refused by PostgreSQL) as U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def address_key(address: str) -> str:
    """The folded address a store keeps beside the address, and what ``records(email=...)``
    compares: :func:`fold_address` of the :func:`storable` address.

    Computed faster for the usual ASCII address (on every claim): NFKC leaves ASCII
    as it is, and ``casefold()`` is ``lower()`` there.
    """
    if address.isascii():
        return storable(address).lower()
    return fold_address(storable(address))


def rejections_can_match(kind: BounceKind | None, email: str | None) -> bool:
    """Whether a ``records(rejected=True, kind=..., email=...)`` filter can match anything:
    a rejected record has kind ``unknown`` and no address."""
    return kind in (None, BounceKind.UNKNOWN) and (email is None or not address_key(email))


def rejected_record(
    *, key: str, provider: str, received_at: datetime, resolved: bool, body: bytes, reason: str
) -> Record:
    """The :class:`Record` of a rejected request, as every store lists it."""
    return Record(
        key=key,
        provider=provider,
        email="",
        kind=BounceKind.UNKNOWN,
        type="",
        received_at=received_at,
        finished=resolved,
        body=body,
        reason=reason,
    )


def aware(moment: datetime) -> datetime:
    """A timestamp read back from a database, aware: naive ones were stored in UTC (SQLite)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def kind_of(value: str) -> BounceKind:
    """The kind stored as ``value``; ``unknown`` for one only a newer version knows."""
    try:
        return BounceKind(value)
    except ValueError:
        return BounceKind.UNKNOWN


# Connection-level errors say what is wrong (refused, locked, read-only) and never
# quote a statement's parameters; other drivers' messages may (DETAIL: Key (...)=(...)).
_DESCRIBED_ERRORS = ("OperationalError", "InterfaceError")
# SQLite's own messages name the problem, a table or a column ("file is not a
# database", "UNIQUE constraint failed: t.email"), never a bound value.
_DESCRIBED_MODULES = ("sqlite3",)


def unavailable(where: str, exc: BaseException) -> StoreUnavailable:
    """The :class:`StoreUnavailable` for a driver error, safe to log.

    Names ``where`` and the driver's error class; the driver's message only for
    connection-level errors and SQLite's errors, first line only, control
    characters escaped: never a statement's parameters.
    """
    # SQLAlchemy wraps the DB-API error in .orig, Django in __cause__.
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc
    name = type(cause).__name__
    message = f"{where}: {name}"
    if (
        name in _DESCRIBED_ERRORS
        or type(exc).__name__ in _DESCRIBED_ERRORS
        or type(cause).__module__ in _DESCRIBED_MODULES
    ):
        first = (str(cause).strip().splitlines() or [""])[0]
        if first:
            message += f" ({loggable(first)})"
    return StoreUnavailable(message)


#: The methods of the Store protocol; ``reject``, ``resolve``, ``claim_many`` and
#: ``settle_many`` are new in 0.2.
STORE_METHODS = (
    "claim",
    "complete",
    "release",
    "records",
    "reject",
    "resolve",
    "claim_many",
    "settle_many",
)


def check_store(store: object) -> None:
    """Raise :class:`ConfigurationError` naming the protocol methods ``store`` lacks.

    The middleware calls it when built: a store written for 0.1 has no
    ``reject()``, and finding out at the first refused request would answer 500
    and drop what should be kept.
    """
    missing = [name for name in STORE_METHODS if not callable(getattr(store, name, None))]
    if missing:
        raise ConfigurationError(
            f"store {type(store).__name__} lacks {', '.join(missing)} of the Store protocol "
            "(reject and resolve keep refused requests for replay, claim_many and "
            "settle_many take batches in one transaction; see the README's "
            "'A store of your own')"
        )


# MemoryStore and open_store live in their own modules; both stay importable from here.
from .memory_store import MemoryStore as MemoryStore  # noqa: E402
from .store_urls import open_store as open_store  # noqa: E402
