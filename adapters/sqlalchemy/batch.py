"""Batches: many events claimed in one transaction, many claims settled in one.

A claim of a batch ends as :meth:`SQLAlchemyStore.claim` would end it, but
with a few statements for the whole batch instead of a transaction per event:
one ``INSERT ... ON CONFLICT DO NOTHING`` run over every new row (the driver
batches them; the unique key still decides between concurrent deliveries),
one ``SELECT`` (a chunk of keys) reads the rows and their completed handlers,
and only the events whose lease is free or expired get the single claim's
conditional lease ``UPDATE``, run over all of them at once.

Each event of a batch gets two random tokens: one written with the row if it
is new, one written by the lease ``UPDATE`` if the event is resumed. Reading
the rows back then says, without relying on any driver's row counts, which
events this batch recorded (``NEW``), took over (``RESUMED``) or left to
another delivery (``BUSY``, ``DONE``).

On PostgreSQL rows are written in key order, so that two batches sharing
events take their row locks in the same order and never deadlock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from bounce_middleware.model import Bounce, fold_address
from bounce_middleware.store import Claim, ClaimState, Settlement, new_token, storable

from .sessions import dialect_of, insert_all_missing
from .tables import BounceEvent, CompletedHandler, metadata, now

__all__ = ["claim_many", "event_row", "settle_many"]

#: Keys per ``IN (...)``: under every database's limit of bound parameters
#: (SQLite before 3.32: 999).
CHUNK = 500

# The tables themselves: executemany UPDATEs are Core statements (an ORM-enabled one
# with several parameter sets would be an ORM bulk UPDATE by primary key).
_events = metadata.tables[BounceEvent.__tablename__]
_handlers = metadata.tables[CompletedHandler.__tablename__]


def event_row(bounce: Bounce, token: str, started: float, lease_seconds: float) -> dict[str, Any]:
    """The ``bounce_events`` row recording ``bounce``, leased to ``token`` (a new event)."""
    email = storable(bounce.email)
    return {
        "key": storable(bounce.key),
        "provider": storable(bounce.provider),
        "email": email,
        "email_key": fold_address(email),
        "kind": bounce.kind.value,
        "type": storable(bounce.type),
        "received_at": now(),
        "finished": False,
        "attempts": 1,
        "lease_token": token,
        "lease_until": started + lease_seconds,
        "body": bounce.body,
    }


@dataclass(frozen=True, slots=True)
class _Stored:
    """One stored event as a batch reads it."""

    token: str | None
    finished: bool
    lease_until: float | None
    completed: frozenset[str]

    def takeable(self, moment: float) -> bool:
        """Unfinished, its lease free or expired at ``moment``."""
        return not self.finished and (self.lease_until is None or self.lease_until <= moment)


def claim_many(
    session: orm.Session, bounces: Sequence[Bounce], *, lease_seconds: float
) -> list[Claim]:
    """:meth:`SQLAlchemyStore.claim` each of ``bounces``, in ``session``'s transaction."""
    started = time.time()
    rows: dict[str, dict[str, Any]] = {}
    for bounce in bounces:
        key = storable(bounce.key)
        if key not in rows:  # keys the store keeps alike are claimed once (see _claims)
            rows[key] = event_row(bounce, new_token(), started, lease_seconds)
    if not rows:
        return []
    keys = sorted(rows)
    _insert_events(session, rows, keys)
    stored = _read(session, keys)
    new = {k for k in keys if k in stored and stored[k].token == rows[k]["lease_token"]}
    # The single claim's takeover, tried only where it may succeed.
    free = [k for k in keys if k in stored and k not in new and stored[k].takeable(started)]
    resumed = {key: new_token() for key in free}
    if free:
        take = (
            sa.update(_events)
            .where(
                _events.c.key == sa.bindparam("event_key"),
                _events.c.finished.is_(False),
                sa.or_(_events.c.lease_until.is_(None), _events.c.lease_until <= started),
            )
            .values(
                lease_token=sa.bindparam("token"),
                lease_until=started + lease_seconds,
                attempts=_events.c.attempts + 1,
            )
        )
        session.execute(take, [{"event_key": key, "token": resumed[key]} for key in free])
        # Read again: a delivery whose lease expired may have completed a handler meanwhile.
        stored.update(_read(session, free))
    return _claims(bounces, rows, new, resumed, stored)


def _claims(
    bounces: Sequence[Bounce],
    rows: Mapping[str, Mapping[str, Any]],
    new: set[str],
    resumed: Mapping[str, str],
    stored: Mapping[str, _Stored],
) -> list[Claim]:
    """The claim of each bounce, in their order; a key met again in the batch is
    ``BUSY`` behind its first claim (or ``DONE`` with it), as a second claim would be."""
    claims: list[Claim] = []
    first: dict[str, Claim] = {}
    for bounce in bounces:
        key = storable(bounce.key)
        earlier = first.get(key)
        if earlier is not None:
            state = ClaimState.BUSY if earlier.runs_handlers else earlier.state
            claims.append(Claim(bounce.key, state, earlier.completed))
            continue
        # A row deleted meanwhile (by hand) is busy, as for claim(): the retry inserts it.
        event = stored.get(key, _Stored(None, False, None, frozenset()))
        if key in new:
            claim = Claim(bounce.key, ClaimState.NEW, frozenset(), str(rows[key]["lease_token"]))
        elif key in resumed and event.token == resumed[key]:
            claim = Claim(bounce.key, ClaimState.RESUMED, event.completed, resumed[key])
        elif event.finished:
            claim = Claim(bounce.key, ClaimState.DONE, event.completed)
        else:
            claim = Claim(bounce.key, ClaimState.BUSY, event.completed)
        first[key] = claim
        claims.append(claim)
    return claims


def settle_many(session: orm.Session, settlements: Sequence[Settlement]) -> None:
    """For each settlement, :meth:`SQLAlchemyStore.complete` its handlers and
    :meth:`SQLAlchemyStore.release` its claim, in ``session``'s transaction."""
    if not settlements:
        return
    when = now()
    done = sorted(
        {(storable(s.claim.key), handler) for s in settlements for handler in s.completed}
    )
    rows = [{"event_key": key, "handler": name, "completed_at": when} for key, name in done]
    insert_all_missing(session, _handlers, rows, ["event_key", "handler"])
    held = _events.c.lease_token == sa.bindparam("token")
    ends = sa.bindparam("ends", type_=sa.Boolean)
    # One statement for both kinds of release, so that every event row is locked in key
    # order. A finished event is marked so whoever holds its lease; a lease is freed only
    # by its own claim. lease_until first: MySQL assigns SET columns left to right.
    release = (
        sa.update(_events)
        .where(_events.c.key == sa.bindparam("event_key"), sa.or_(ends, held))
        .ordered_values(
            (_events.c.lease_until, sa.case((held, None), else_=_events.c.lease_until)),
            (_events.c.lease_token, sa.case((held, None), else_=_events.c.lease_token)),
            (_events.c.finished, sa.or_(_events.c.finished, ends)),
        )
    )
    finishing: dict[str, bool] = {}
    tokens: set[tuple[str, str | None]] = set()
    for settlement in settlements:
        key = storable(settlement.claim.key)
        finishing[key] = finishing.get(key, False) or settlement.finished
        # Every claim of a key given twice: the one that holds the lease frees it.
        tokens.add((key, settlement.claim.token))
    params = [
        {"event_key": key, "token": token, "ends": finishing[key]}
        for key, token in sorted(tokens, key=lambda pair: (pair[0], pair[1] or ""))
    ]
    session.execute(release, params)


def _insert_events(session: orm.Session, rows: dict[str, dict[str, Any]], keys: list[str]) -> None:
    """Insert the ``rows`` (by key, in the batch's order) whose key is not stored yet.

    Listed as if claimed one by one, the batch's rows get ids in the batch's
    order. On PostgreSQL they are inserted in key order all the same, with ids
    taken from the table's sequence beforehand: two batches that share events,
    listed in different orders, then wait for each other instead of deadlocking.
    """
    order: Sequence[str] = list(rows)
    if dialect_of(session, BounceEvent) == "postgresql":
        ids = _next_ids(session, len(rows))
        if ids is not None:
            for key, row_id in zip(order, ids, strict=True):
                rows[key]["id"] = row_id
            order = keys
    insert_all_missing(session, _events, [rows[key] for key in order], ["key"])


def _next_ids(session: orm.Session, count: int) -> list[int] | None:
    """``count`` ids from the sequence of ``bounce_events.id``, ascending (PostgreSQL);
    None when the column has no sequence of its own (a table made by hand)."""
    table = session.get_bind(mapper=sa.inspect(BounceEvent)).dialect.identifier_preparer
    found = session.execute(
        sa.text(
            "SELECT nextval(pg_get_serial_sequence(:table, :column)) "
            "FROM generate_series(1, :count)"
        ),
        {"table": table.format_table(_events), "column": _events.c.id.name, "count": count},
    ).scalars()
    ids = list(found)
    if None in ids:
        return None
    return sorted(ids)


def _read(session: orm.Session, keys: Sequence[str]) -> dict[str, _Stored]:
    """The stored events of ``keys``, each with the handlers it completed (one query a chunk)."""
    found: dict[str, tuple[str | None, bool, float | None, set[str]]] = {}
    joined = _events.outerjoin(_handlers, _handlers.c.event_key == _events.c.key)
    for chunk in _chunks(keys, CHUNK):
        query = (
            sa.select(
                _events.c.key,
                _events.c.lease_token,
                _events.c.finished,
                _events.c.lease_until,
                _handlers.c.handler,
            )
            .select_from(joined)
            .where(_events.c.key.in_(chunk))
        )
        for key, token, finished, lease_until, handler in session.execute(query):
            row = found.setdefault(key, (token, bool(finished), lease_until, set()))
            if handler is not None:
                row[3].add(handler)
    return {key: _Stored(t, f, u, frozenset(h)) for key, (t, f, u, h) in found.items()}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
