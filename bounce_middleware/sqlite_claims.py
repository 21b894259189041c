"""The SQL of :class:`~bounce_middleware.sqlite_store.SQLiteStore`'s claims and leases.

Each function runs inside a transaction the store has begun with ``BEGIN
IMMEDIATE``: the write lock is held from the first statement, so what a
``SELECT`` reads cannot change before the ``INSERT`` or ``UPDATE`` that
follows. A batch (:func:`claim_many`, :func:`settle_many`) decides every
event's state exactly as :func:`claim` would, in a handful of statements:
one ``SELECT`` per few hundred keys, then one ``executemany`` per kind of write.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from .model import Bounce
from .store import Claim, ClaimState, Settlement, address_key, new_token, storable

__all__ = ["claim", "claim_many", "complete", "release", "settle_many", "timestamp"]

T = TypeVar("T")

# Well under SQLite's bound-parameter limit (999 before 3.32) in one IN list.
_CHUNK = 500

_INSERT_EVENT = """INSERT INTO bounce_event (key, provider, email, email_key, kind, type,
       received_at, attempts, body, lease_token, lease_expires)
   VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"""

_TAKE_LEASE = """UPDATE bounce_event
   SET lease_token = ?, lease_expires = ?, attempts = attempts + 1
   WHERE key = ?"""

# Completions are keyed by the event's id (see sqlite_schema); a Claim knows the key,
# whose index finds the id (the claim has just read or written that index page).
_INSERT_COMPLETION = """INSERT INTO bounce_completion (event, handler, completed_at)
   SELECT id, ?, ? FROM bounce_event WHERE key = ?
   ON CONFLICT (event, handler) DO NOTHING"""

# SET expressions all see the row as it was, so the token test holds for both.
_RELEASE = """UPDATE bounce_event
   SET finished_at = COALESCE(finished_at, ?),
       lease_token = CASE WHEN lease_token = ? THEN NULL ELSE lease_token END,
       lease_expires = CASE WHEN lease_token = ? THEN NULL ELSE lease_expires END
   WHERE key = ?"""


def timestamp(seconds: float) -> str:
    """``seconds`` since the epoch as the store keeps timestamps: ISO 8601 in UTC."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def _event_row(
    bounce: Bounce, stored_key: str, received_at: str, token: str, expires: float
) -> tuple[object, ...]:
    """The values of :data:`_INSERT_EVENT` for a new event."""
    email = storable(bounce.email)
    return (
        stored_key,
        storable(bounce.provider),
        email,
        address_key(email),
        bounce.kind.value,
        storable(bounce.type),
        received_at,
        bounce.body,
        token,
        expires,
    )


def claim(conn: sqlite3.Connection, bounce: Bounce, *, now: float, lease_seconds: float) -> Claim:
    """Claim one event: a new one is a single ``INSERT``."""
    key = bounce.key
    stored_key = storable(key)
    token = new_token()
    inserted = conn.execute(
        _INSERT_EVENT + " ON CONFLICT (key) DO NOTHING",
        _event_row(bounce, stored_key, timestamp(now), token, now + lease_seconds),
    ).rowcount
    if inserted:
        return Claim(key, ClaimState.NEW, frozenset(), token)
    event_id, finished_at, lease_expires = conn.execute(
        "SELECT id, finished_at, lease_expires FROM bounce_event WHERE key = ?", (stored_key,)
    ).fetchone()
    completed = frozenset(
        name
        for (name,) in conn.execute(
            "SELECT handler FROM bounce_completion WHERE event = ?", (event_id,)
        )
    )
    if finished_at is not None:
        return Claim(key, ClaimState.DONE, completed)
    if lease_expires is not None and lease_expires > now:
        return Claim(key, ClaimState.BUSY, completed)
    conn.execute(_TAKE_LEASE, (token, now + lease_seconds, stored_key))
    return Claim(key, ClaimState.RESUMED, completed, token)


class _Known:
    """What :func:`claim_many` knows of one stored event while it decides the batch."""

    __slots__ = ("completed", "finished", "lease_expires")

    def __init__(self, finished: bool, lease_expires: float | None) -> None:
        self.finished = finished
        self.lease_expires = lease_expires
        self.completed: frozenset[str] = frozenset()


def claim_many(
    conn: sqlite3.Connection, bounces: Sequence[Bounce], *, now: float, lease_seconds: float
) -> list[Claim]:
    """Claim every event of a batch, each as :func:`claim` would, in order.

    The stored rows are read first (the write lock is held, so they stay as
    read), then each event is decided in turn; a later event of the batch sees
    what an earlier one did (two keys :func:`storable` makes equal behave as
    two claims in a row).
    """
    keys = [bounce.key for bounce in bounces]
    stored_keys = [storable(key) for key in keys]
    known = _read_events(conn, stored_keys)
    received_at = timestamp(now)
    expires = now + lease_seconds
    # What every event this batch inserts looks like to a later claim of the same key.
    fresh = _Known(False, expires)
    inserts: list[tuple[object, ...]] = []
    takeovers: list[tuple[str, float, str]] = []
    claims: list[Claim] = []
    # One read of the random source for the batch: a token per event, as new_token() makes.
    random = secrets.token_hex(8 * len(keys))
    for n, (bounce, key, stored_key) in enumerate(zip(bounces, keys, stored_keys, strict=True)):
        event = known.get(stored_key)
        if event is not None and event.finished:
            claims.append(Claim(key, ClaimState.DONE, event.completed))
            continue
        if event is not None and event.lease_expires is not None and event.lease_expires > now:
            claims.append(Claim(key, ClaimState.BUSY, event.completed))
            continue
        token = random[16 * n : 16 * n + 16]
        if event is None:
            inserts.append(_event_row(bounce, stored_key, received_at, token, expires))
            known[stored_key] = fresh
            claims.append(Claim(key, ClaimState.NEW, frozenset(), token))
        else:
            takeovers.append((token, expires, stored_key))
            event.lease_expires = expires
            claims.append(Claim(key, ClaimState.RESUMED, event.completed, token))
    # Inserts first: a takeover may be of an event this very batch inserted.
    if inserts:
        conn.executemany(_INSERT_EVENT, inserts)
    if takeovers:
        conn.executemany(_TAKE_LEASE, takeovers)
    return claims


def _read_events(conn: sqlite3.Connection, stored_keys: list[str]) -> dict[str, _Known]:
    """The stored events among ``stored_keys``, with their completed handlers."""
    known: dict[str, _Known] = {}
    keys: dict[int, str] = {}
    for chunk in _chunks(stored_keys):
        for event_id, key, finished_at, lease_expires in conn.execute(
            "SELECT id, key, finished_at, lease_expires FROM bounce_event "
            f"WHERE key IN ({_marks(len(chunk))})",
            chunk,
        ):
            known[key] = _Known(finished_at is not None, lease_expires)
            keys[event_id] = key
    if not known:
        # The usual batch: every event new, nothing more to read.
        return known
    completed: dict[str, set[str]] = {}
    for ids in _chunks(list(keys)):
        for event_id, name in conn.execute(
            f"SELECT event, handler FROM bounce_completion WHERE event IN ({_marks(len(ids))})",
            ids,
        ):
            completed.setdefault(keys[event_id], set()).add(name)
    for key, names in completed.items():
        known[key].completed = frozenset(names)
    return known


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def complete(
    conn: sqlite3.Connection, claim: Claim, handler: str, *, now: float, finished: bool
) -> None:
    """Record one handler's success; ``finished`` also ends the claim as finished."""
    conn.execute(_INSERT_COMPLETION, (storable(handler), timestamp(now), storable(claim.key)))
    if finished:
        release(conn, claim, finished_at=timestamp(now))


def release(conn: sqlite3.Connection, claim: Claim, *, finished_at: str | None) -> None:
    """End a claim: mark the event finished at ``finished_at`` (unless None), and free
    the lease only if the claim's token still holds it."""
    conn.execute(_RELEASE, (finished_at, claim.token, claim.token, storable(claim.key)))


def settle_many(conn: sqlite3.Connection, settlements: Sequence[Settlement], *, now: float) -> None:
    """Record each settlement's completed handlers, then release its claim."""
    at = timestamp(now)
    conn.executemany(
        _INSERT_COMPLETION,
        [
            (storable(handler), at, storable(settlement.claim.key))
            for settlement in settlements
            for handler in settlement.completed
        ],
    )
    conn.executemany(
        _RELEASE,
        [
            (
                at if settlement.finished else None,
                settlement.claim.token,
                settlement.claim.token,
                storable(settlement.claim.key),
            )
            for settlement in settlements
        ],
    )
