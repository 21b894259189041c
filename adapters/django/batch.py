"""Batches for ``DjangoStore``: many events claimed in one transaction, many claims settled in one.

Each claim of a batch ends as :meth:`DjangoStore.claim` would end it, with a
few statements for the whole batch: the new events are inserted many rows to
a statement (``ON CONFLICT DO NOTHING`` in the plain SQL of :mod:`.batch_sql`,
``bulk_create(ignore_conflicts=True)`` on the ORM path: the unique key still
decides between concurrent deliveries), one ``SELECT`` reads the batch's rows, and only the
events whose lease is free or expired get the single claim's conditional
lease ``UPDATE``. Each event gets two random tokens, one written with its row
if it is new and one by the takeover: reading the rows back tells which
events this batch recorded or took over, without relying on row counts.

Listed as if claimed one by one, a batch's rows get ids in the batch's order.
On PostgreSQL they are inserted in key order all the same, with ids taken
from the table's sequence beforehand, and every write goes in key order: two
batches sharing events, listed in different orders, wait for each other
instead of deadlocking.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Concat
from django.utils import timezone

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce
from bounce_middleware.store import (
    Claim,
    ClaimState,
    Settlement,
    address_key,
    new_token,
    storable,
)

from .batch_sql import BatchSQL, batch_sql, db_datetime
from .models import BounceEvent
from .prepared import quote

__all__ = ["claim_many", "event_values", "settle_many"]

#: Rows per ``bulk_create`` statement and keys per ``IN (...)`` on the ORM path.
CHUNK = 500


def event_values(bounce: Bounce, token: str, now: datetime, expires: datetime) -> dict[str, Any]:
    """The fields of the row recording ``bounce`` as a new event, leased to ``token``."""
    email = storable(bounce.email)
    return {
        "key": storable(bounce.key),
        "provider": storable(bounce.provider),
        "email": email,
        "email_key": address_key(email),
        "kind": bounce.kind.value,
        "type": storable(bounce.type),
        "description": storable(bounce.description),
        "body": bounce.body,
        "received_at": now,
        "completed": "",
        "finished": False,
        "attempts": 1,
        "lease_token": token,
        "lease_expires": expires,
    }


@dataclass(frozen=True, slots=True)
class _Stored:
    """One stored event as a batch reads it."""

    token: str
    finished: bool
    completed: frozenset[str]
    #: Unfinished, its lease free or expired: the takeover may succeed.
    takeable: bool


def claim_many(
    db: str, bounces: Sequence[Bounce], *, lease_seconds: float, prepared: bool
) -> list[Claim]:
    """:meth:`DjangoStore.claim` each of ``bounces``, in one transaction on ``db``;
    ``prepared``: plain SQL (:mod:`.batch_sql`) where the database allows it."""
    now = timezone.now()
    expires = now + timedelta(seconds=lease_seconds)
    rows: dict[str, dict[str, Any]] = {}
    for bounce in bounces:
        key = storable(bounce.key)
        if key not in rows:  # keys the store keeps alike are claimed once (see _claims)
            rows[key] = event_values(bounce, new_token(), now, expires)
    if not rows:
        return []
    sql = batch_sql(db) if prepared else None
    keys = sorted(rows)
    with transaction.atomic(using=db):
        _insert(db, rows, keys, sql)
        stored = _read(db, keys, now, sql)
        new = {k for k in keys if k in stored and stored[k].token == rows[k]["lease_token"]}
        # The single claim's takeover, tried only where it may succeed.
        free = [k for k in keys if k in stored and k not in new and stored[k].takeable]
        resumed = {key: new_token() for key in free}
        if free:
            _take(db, resumed, now, expires, sql)
            # Read again: a delivery whose lease expired may have completed a handler.
            stored.update(_read(db, free, now, sql))
        if len(stored) < len(keys):  # deleted meanwhile (by an admin); the retry inserts it
            raise StoreUnavailable("bounce store: an event vanished while being claimed")
    return _claims(bounces, rows, new, resumed, stored)


def _claims(
    bounces: Sequence[Bounce],
    rows: dict[str, dict[str, Any]],
    new: set[str],
    resumed: dict[str, str],
    stored: dict[str, _Stored],
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
        event = stored[key]
        if key in new:
            claim = Claim(bounce.key, ClaimState.NEW, frozenset(), rows[key]["lease_token"])
        elif key in resumed and event.token == resumed[key]:
            claim = Claim(bounce.key, ClaimState.RESUMED, event.completed, resumed[key])
        elif event.finished:
            claim = Claim(bounce.key, ClaimState.DONE, event.completed)
        else:
            claim = Claim(bounce.key, ClaimState.BUSY, event.completed)
        first[key] = claim
        claims.append(claim)
    return claims


def _insert(
    db: str, rows: dict[str, dict[str, Any]], keys: list[str], sql: BatchSQL | None
) -> None:
    """Insert the ``rows`` whose key is not stored yet (see the module's docstring)."""
    order = list(rows)
    if connections[db].vendor == "postgresql":
        ids = _next_ids(db, len(rows))
        if ids is not None:
            for key, row_id in zip(order, ids, strict=True):
                rows[key]["id"] = row_id
            order = keys
    if sql is not None:
        sql.insert_rows(db, [rows[key] for key in order])
        return
    events = BounceEvent.objects.using(db)
    if connections[db].features.supports_ignore_conflicts:
        objects = [BounceEvent(**rows[key]) for key in order]
        events.bulk_create(objects, batch_size=CHUNK, ignore_conflicts=True)
        return
    for key in order:  # a savepoint each: a duplicate leaves the transaction usable
        try:
            with transaction.atomic(using=db):
                BounceEvent(**rows[key]).save(force_insert=True, using=db)
        except IntegrityError:
            continue  # the key exists: _read tells whose row it is


def _next_ids(db: str, count: int) -> list[int] | None:
    """``count`` ids from the sequence of the events' table, ascending (PostgreSQL);
    None when its id column has no sequence of its own (a table made by hand)."""
    pk = BounceEvent._meta.pk
    assert pk is not None
    with connections[db].cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [quote(BounceEvent._meta.db_table), pk.column, count],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return None if None in ids else sorted(ids)


def _read(db: str, keys: Sequence[str], now: datetime, sql: BatchSQL | None) -> dict[str, _Stored]:
    """The stored events of ``keys``; ``takeable`` compares their lease with ``now``."""
    found: dict[str, _Stored] = {}
    if sql is not None:
        for key, token, finished, completed, free in sql.read(db, keys, db_datetime(db, now)):
            lines = frozenset(completed.splitlines())
            found[key] = _Stored(token, bool(finished), lines, bool(free) and not finished)
        return found
    events = BounceEvent.objects.using(db)
    for chunk in _chunks(keys, CHUNK):
        for key, token, finished, completed, lease in events.filter(key__in=chunk).values_list(
            "key", "lease_token", "finished", "completed", "lease_expires"
        ):
            free = lease is None or lease <= now
            lines = frozenset(completed.splitlines())
            found[key] = _Stored(token, finished, lines, free and not finished)
    return found


def _take(
    db: str, tokens: dict[str, str], now: datetime, expires: datetime, sql: BatchSQL | None
) -> None:
    """The single claim's takeover of each event of ``tokens`` (key: new token), if its
    lease is still free or expired; in key order."""
    if sql is not None:
        sql.take(db, tokens, db_datetime(db, now), db_datetime(db, expires))
        return
    events = BounceEvent.objects.using(db)
    for chunk in _chunks(sorted(tokens.items()), CHUNK):
        token = Case(*(When(key=key, then=Value(new)) for key, new in chunk))
        events.filter(
            Q(lease_expires__isnull=True) | Q(lease_expires__lte=now),
            key__in=[key for key, _ in chunk],
            finished=False,
        ).update(lease_token=token, lease_expires=expires, attempts=F("attempts") + 1)


def settle_many(db: str, settlements: Sequence[Settlement], *, prepared: bool) -> None:
    """For each settlement, record its handlers as :meth:`DjangoStore.complete` does
    outside a transaction, then end its claim as :meth:`DjangoStore.release` does;
    in one transaction on ``db``, every event in key order."""
    ends: dict[str, tuple[str, str, bool]] = {}
    others: list[tuple[str, str]] = []  # a key's further claims: their tokens alone
    for settlement in sorted(settlements, key=lambda s: storable(s.claim.key)):
        key = storable(settlement.claim.key)
        names = "".join(handler + "\n" for handler in settlement.completed)
        if key in ends:  # keys the store keeps alike: one row, settled once with both
            token, earlier, finished = ends[key]
            ends[key] = (token, earlier + names, finished or settlement.finished)
            if settlement.claim.token != token:
                # Whichever claim holds the lease frees it, as SQLite's release does.
                others.append((key, settlement.claim.token))
        else:
            ends[key] = (settlement.claim.token, names, settlement.finished)
    if not ends:
        return
    sql = batch_sql(db) if prepared else None
    with transaction.atomic(using=db):
        if sql is not None:
            sql.settle(db, ends, others)
            return
        _settle_orm(db, ends, others)


def _settle_orm(
    db: str, ends: dict[str, tuple[str, str, bool]], others: Sequence[tuple[str, str]] = ()
) -> None:
    """:func:`settle_many` through the ORM: a few statements for events settled alike.

    First the completions and finishing, whoever holds the lease (as ``complete``
    outside a transaction records them); those rows stay locked until the end,
    so the leases freed next are exactly those the claims' tokens held.
    """
    events = BounceEvent.objects.using(db)
    alike: dict[tuple[str, bool], list[str]] = {}
    for key, (_, names, finished) in ends.items():
        alike.setdefault((names, finished), []).append(key)
    for (names, finished), keys in sorted(alike.items()):
        changes: dict[str, Any] = {}
        if names:
            changes["completed"] = Concat(F("completed"), Value(names))
        if finished:
            changes["finished"] = True
        for chunk in _chunks(keys, CHUNK) if changes else ():
            events.filter(key__in=chunk).update(**changes)
    held = sorted([*((key, token) for key, (token, _, _) in ends.items()), *others])
    for pairs in _chunks(held, CHUNK // 2):
        either = functools.reduce(operator.or_, (Q(key=k, lease_token=t) for k, t in pairs))
        events.filter(either).update(lease_expires=None, lease_token="")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
