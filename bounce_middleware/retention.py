"""Retention and the counts an operator watches: prune finished events, count what is stuck.

A store keeps every event it accepted, forever, unless something deletes the
old ones. :func:`prune` does, in bounded batches: each batch is one short
transaction of the store's :meth:`~PrunableStore.prune`, so a prune of a
million events never holds a lock the webhook path waits for more than a
moment. Only *finished* events go (every handler completed them), with their
completions; an unfinished event (a handler still failing, a delivery running,
an event waiting in a queue) and a rejected request (kept until a replay
resolves it) are never deleted, however old.

A pruned event is forgotten: if its provider delivered it again, it would be
new, and its handlers would run again. Providers stop retrying within about a
day (Resend's schedule, the longest published, ends about 28 hours after the
first attempt; SendGrid and Mailjet retry for 24 hours), so a cut-off of weeks
or months is safe; :data:`SAFE_AGE` is what the command line warns under.

:meth:`~CountingStore.counts` (and :func:`counts_of`, for any store) says how
many events a store holds, how many are unfinished (and since when) and how
many rejected requests wait for a replay: ``bounce-middleware list``,
``replay`` and ``prune`` print it, so that anything stuck shows at a glance.
Both methods are optional parts of the store protocol; every shipped store has them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "SAFE_AGE",
    "CountingStore",
    "PrunableStore",
    "StoreCounts",
    "counts_of",
    "parse_duration",
    "prune",
    "prune_before",
]

#: Events deleted per transaction by :func:`prune`.
DEFAULT_BATCH_SIZE = 1000
#: Under this age an event may still be redelivered by its provider (see the module text).
SAFE_AGE = timedelta(days=3)
#: How far past a cut-off a store walking its events in order of receipt (by id) keeps
#: looking before it stops: ids follow receipt times, give or take overlapping
#: transactions and a clock stepped back, never by an hour.
DISORDER = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """What a store holds, as :meth:`CountingStore.counts` counts it."""

    #: Accepted events (rejected requests are not events).
    events: int
    #: Events some handler has not completed yet: in flight, failing, or waiting.
    unfinished: int
    #: Rejected requests kept (authenticated, refused with 400).
    rejected: int
    #: Rejected requests no replay has resolved yet.
    rejected_unresolved: int
    #: When the oldest unfinished event was received; None when there is none.
    oldest_unfinished: datetime | None = None
    #: Finished events received before the ``before`` given to ``counts``: what
    #: ``prune(before)`` deletes. 0 when no ``before`` was given.
    prunable: int = 0

    def summary(self) -> str:
        """``12,345 events, 3 unfinished (oldest received 2026-01-02 03:04:05Z),
        1 rejected unresolved``."""
        unfinished = f"{self.unfinished:,} unfinished"
        if self.unfinished and self.oldest_unfinished is not None:
            oldest = _utc(self.oldest_unfinished).strftime("%Y-%m-%d %H:%M:%SZ")
            unfinished += f" (oldest received {oldest})"
        rejected = f"{self.rejected_unresolved:,} rejected unresolved"
        events = f"{self.events:,} event{'' if self.events == 1 else 's'}"
        return f"{events}, {unfinished}, {rejected}"


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC already, as the stores take it
    (``astimezone`` alone would read it as the host's local time)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@runtime_checkable
class PrunableStore(Protocol):
    """A store that can delete old finished events (optional part of the protocol)."""

    def prune(self, before: datetime, *, limit: int) -> int:
        """Delete at most ``limit`` finished events received before ``before``, oldest
        first, with their completions; return how many were deleted.

        Never an unfinished event, never a rejected request. One short
        transaction: :func:`prune` calls it until a call deletes none. A naive
        ``before`` is in UTC.
        """
        ...


@runtime_checkable
class CountingStore(Protocol):
    """A store that can count what it holds (optional part of the protocol)."""

    def counts(self, *, before: datetime | None = None) -> StoreCounts:
        """Count events, unfinished ones, rejected requests, with ``COUNT`` queries;
        with ``before`` (naive: UTC), also the finished events received before it
        (``prunable``). ``oldest_unfinished`` is aware."""
        ...


def prune(
    store: Store,
    older_than: timedelta | str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause: float = 0.0,
) -> int:
    """Delete the finished events received more than ``older_than`` ago; return how many.

    ``older_than`` is a ``timedelta`` or a duration such as ``"90d"`` (see
    :func:`parse_duration`). Deletes in batches of at most ``batch_size``
    events, each its own transaction, until a batch deletes none, sleeping
    ``pause`` seconds after each full batch (room for the webhook path on a busy
    SQLite file). Unfinished events and
    rejected requests stay. Raises :class:`~bounce_middleware.errors.ConfigurationError`
    for a store without ``prune`` or a cut-off that is not in the past, and
    :class:`~bounce_middleware.errors.StoreUnavailable` if the store fails
    (the batches already committed stay deleted).
    """
    age = parse_duration(older_than) if isinstance(older_than, str) else older_than
    if not isinstance(age, timedelta) or age <= timedelta(0):
        raise ConfigurationError(f"older_than must be a positive duration, got {older_than!r}")
    try:
        before = datetime.now(UTC) - age
    except OverflowError:
        raise ConfigurationError(f"older_than {older_than!r} reaches back before year 1") from None
    return prune_before(store, before, batch_size=batch_size, pause=pause)


def prune_before(
    store: Store, before: datetime, *, batch_size: int = DEFAULT_BATCH_SIZE, pause: float = 0.0
) -> int:
    """:func:`prune` with a cut-off time: the finished events received before ``before``."""
    if before.tzinfo is None:
        raise ConfigurationError("before must be an aware datetime (e.g. in UTC)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be a whole number, 1 or more: {batch_size!r}")
    if not isinstance(store, PrunableStore):
        raise ConfigurationError(
            f"store {type(store).__name__} cannot prune: it has no prune(before, *, limit) "
            "method (see the README's 'A store of your own')"
        )
    total = 0
    while True:
        deleted = store.prune(before, limit=batch_size)
        total += deleted
        # A batch short of its limit may have skipped rows another transaction held
        # (PostgreSQL's SKIP LOCKED), with more old events behind them: only a batch
        # that deletes nothing ends the run. The pause follows full batches only.
        if deleted == 0:
            return total
        if deleted >= batch_size and pause > 0:
            time.sleep(pause)


def counts_of(store: Store, *, before: datetime | None = None) -> StoreCounts:
    """``store.counts(before=...)``, or, for a store without it, the same counted from
    :meth:`~bounce_middleware.store.Store.records` (which lists every record: slow
    on a large store)."""
    if isinstance(store, CountingStore):
        return store.counts(before=before)
    before = None if before is None else _utc(before)
    events = store.records(limit=None)
    unfinished = [record.received_at for record in events if not record.finished]
    try:
        rejected = store.records(rejected=True, limit=None)
    except TypeError:  # a store written before rejected records existed keeps none
        rejected = ()
    return StoreCounts(
        events=len(events),
        unfinished=len(unfinished),
        rejected=len(rejected),
        rejected_unresolved=sum(not record.finished for record in rejected),
        oldest_unfinished=min(unfinished, default=None),
        prunable=0
        if before is None
        else sum(record.finished and record.received_at < before for record in events),
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")
# A cut-off any clock can still subtract from now.
_LONGEST = 1000 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """``"90d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"``, or several: ``"1d12h"``.

    Raises :class:`~bounce_middleware.errors.ConfigurationError` saying what is
    wrong for anything else, and for a duration of zero.
    """
    compact = text.strip().lower()
    if compact.startswith("-"):
        raise ConfigurationError(f"{text!r} is negative: give how long ago, e.g. 90d")
    if not compact or _DURATION.sub("", compact) or len(compact) > 20:
        raise ConfigurationError(
            f"{text!r} is not a duration: use a whole number and a unit, s, m, h, d or w "
            "(90d, 12h, 30m; or 1d12h)"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
    if seconds == 0:
        raise ConfigurationError(f"{text!r} is no time at all: give a positive duration")
    if seconds > _LONGEST:
        raise ConfigurationError(f"{text!r} is longer than 1,000 years")
    return timedelta(seconds=seconds)
