"""Stores: remember each accepted bounce and which handlers completed it.

A store is what makes redeliveries safe. The middleware asks it to
:meth:`~Store.claim` an event before any handler runs; the claim says whether
the event is new, resumed after a failure, already finished, or being handled
right now by another delivery. Each handler's success is recorded with
:meth:`~Store.complete`, and :meth:`~Store.release` ends the claim.
"""

from __future__ import annotations

import enum
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from .errors import ConfigurationError
from .model import Bounce, BounceKind

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
      matches case-insensitively, ``unfinished`` keeps events not yet finished.
    - Any failure to read or write raises
      :class:`~bounce_middleware.errors.StoreUnavailable` (answered 503 with
      ``Retry-After``, so the provider retries); nothing else escapes.
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
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events, newest first, optionally filtered; ``limit=None`` for all."""
        ...


def new_token() -> str:
    """A random claim token, so a delivery only releases its own claim."""
    return secrets.token_hex(8)


class _MemoryEvent:
    """MemoryStore's mutable bookkeeping for one event (a Record is built on demand)."""

    __slots__ = ("bounce", "received_at", "attempts", "completed", "finished", "lease")

    def __init__(self, bounce: Bounce) -> None:
        self.bounce = bounce
        self.received_at = datetime.now(UTC)
        self.attempts = 0
        self.completed: set[str] = set()
        self.finished = False
        self.lease: tuple[str, float] | None = None  # (token, monotonic expiry)

    def record(self) -> Record:
        bounce = self.bounce
        return Record(
            key=bounce.key,
            provider=bounce.provider,
            email=bounce.email,
            kind=bounce.kind,
            type=bounce.type,
            received_at=self.received_at,
            finished=self.finished,
            completed=frozenset(self.completed),
            body=bounce.body,
            attempts=self.attempts,
        )


class MemoryStore:
    """A store in process memory, for tests and single-process experiments.

    Thread-safe; forgets everything when the process exits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, _MemoryEvent] = {}

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        key = bounce.key
        now = time.monotonic()
        with self._lock:
            event = self._events.get(key)
            if event is None:
                event = self._events[key] = _MemoryEvent(bounce)
                state = ClaimState.NEW
            elif event.finished:
                return Claim(key, ClaimState.DONE, frozenset(event.completed))
            elif event.lease is not None and event.lease[1] > now:
                return Claim(key, ClaimState.BUSY, frozenset(event.completed))
            else:
                state = ClaimState.RESUMED
            token = new_token()
            event.lease = (token, now + lease_seconds)
            event.attempts += 1
            return Claim(key, state, frozenset(event.completed), token)

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim."""
        with self._lock:
            self._events[claim.key].completed.add(handler)
            if finished:
                self._release(claim, finished=True)

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        with self._lock:
            self._release(claim, finished=finished)

    def _release(self, claim: Claim, *, finished: bool) -> None:
        # Called with the lock held.
        event = self._events[claim.key]
        if event.lease is not None and event.lease[0] == claim.token:
            event.lease = None
        if finished:
            event.finished = True

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events, newest first, optionally filtered."""
        with self._lock:
            found = [
                e.record()
                for e in reversed(self._events.values())
                if (kind is None or e.bounce.kind == kind)
                and (email is None or e.bounce.email.lower() == email.lower())
                and not (unfinished and e.finished)
            ]
        return found if limit is None else found[: max(limit, 0)]

    def close(self) -> None:
        """Nothing to release; present so every shipped store can be closed alike."""


def open_store(url: str) -> Store:
    """Open a store from a URL.

    ``memory://``, or SQLAlchemy's SQLite convention: ``sqlite:///relative.sqlite3``
    (resolved against the current directory), ``sqlite:////absolute.sqlite3``.
    A SQLite URL may carry :class:`~bounce_middleware.sqlite_store.SQLiteStore`
    options as a query: ``?timeout=2`` (seconds to wait for a lock),
    ``?synchronous=FULL``, ``?mode=ro`` (read-only, for listing).
    """
    if url in ("memory:", "memory://"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite_store import SQLiteStore

        path, _, query = url[len("sqlite:///") :].partition("?")
        if not path:
            raise ConfigurationError("store URL sqlite:/// needs a file path after the third slash")
        options = _sqlite_options(query)
        return SQLiteStore(path, **options)
    raise ConfigurationError(
        f"unsupported store URL {url.split(':', 1)[0]!r}: use memory:// or sqlite:///path"
    )


def _sqlite_options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"store URL query {query!r} is malformed") from None
    for name, value in pairs:
        if name == "timeout":
            try:
                options["timeout"] = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"store URL option timeout={value!r} is not a number of seconds"
                ) from None
        elif name == "synchronous":
            options["synchronous"] = value
        elif name == "mode" and value in ("ro", "rwc"):
            options["read_only"] = value == "ro"
        else:
            raise ConfigurationError(
                f"unknown store URL option {name}={value!r}; known: timeout=SECONDS, "
                "synchronous=NORMAL|FULL, mode=ro"
            )
    return options
