"""Batches for ``DjangoStore``: many events claimed in one transaction, many claims settled in one.

Each claim of a batch ends as :meth:`DjangoStore.claim` would end it, with a
few statements for the whole batch: the new events are inserted many rows to
a statement (``ON CONFLICT DO NOTHING``, or ``bulk_create(ignore_conflicts=True)``
on the ORM path, so the unique key still decides between concurrent
deliveries), one ``SELECT`` reads every stored row of the batch, and only the
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
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, models, transaction
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

from .models import BounceEvent
from .prepared import VENDORS, Insert, column_of, insert_statement, quote

__all__ = ["BatchStatements", "claim_many", "event_values", "settle_many"]

#: Rows per multi-row ``INSERT`` and keys per ``IN (...)``: well under every
#: database's limit of bound parameters (PostgreSQL 65,535; SQLite 32,766).
CHUNK = 500
# SQLite before 3.32 allows 999 parameters to a statement.
_OLD_SQLITE_PARAMETERS = 999


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
    free: bool  #: its lease is free or expired


def claim_many(
    db: str, bounces: Sequence[Bounce], *, lease_seconds: float, prepared: bool
) -> list[Claim]:
    """:meth:`DjangoStore.claim` each of ``bounces``, in one transaction on ``db``;
    ``prepared``: plain SQL where :data:`~.prepared.VENDORS` allow it."""
    now = timezone.now()
    expires = now + timedelta(seconds=lease_seconds)
    rows: dict[str, dict[str, Any]] = {}
    for bounce in bounces:
        key = storable(bounce.key)
        if key not in rows:  # keys the store keeps alike are claimed once (see _claims)
            rows[key] = event_values(bounce, new_token(), now, expires)
    if not rows:
        return []
    sql = batch_statements(db) if prepared else None
    keys = sorted(rows)
    with transaction.atomic(using=db):
        _insert(db, rows, keys, sql)
        stored = _read(db, keys, now, sql)
        new = {k for k in keys if k in stored and stored[k].token == rows[k]["lease_token"]}
        free = [k for k in keys if k in stored and k not in new]
        free = [k for k in free if not stored[k].finished and stored[k].free]
        resumed = {key: new_token() for key in free}
        if free:
            _take(db, resumed, now, expires, sql)
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
    db: str, rows: dict[str, dict[str, Any]], keys: list[str], sql: BatchStatements | None
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
        statement = sql.insert_with_id if "id" in rows[order[0]] else sql.insert
        for chunk in _chunks(order, sql.rows_per_insert):
            statement.run(db, [rows[key] for key in chunk])
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
    table = quote(BounceEvent._meta.db_table)
    pk = BounceEvent._meta.pk
    assert pk is not None
    with connections[db].cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, pk.column, count],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return None if None in ids else sorted(ids)


def _read(
    db: str, keys: Sequence[str], now: datetime, sql: BatchStatements | None
) -> dict[str, _Stored]:
    """The stored events of ``keys``; ``free`` compares their lease with ``now``."""
    found: dict[str, _Stored] = {}
    if sql is not None:
        moment = _db_datetime(db, now)
        with connections[db].cursor() as cursor:
            for chunk in _chunks(keys, CHUNK):
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"{sql.read} ({marks})", [moment, *chunk])
                for key, token, finished, completed, free in cursor.fetchall():
                    found[key] = _Stored(
                        token, bool(finished), frozenset(completed.splitlines()), bool(free)
                    )
        return found
    events = BounceEvent.objects.using(db)
    for chunk in _chunks(keys, CHUNK):
        for key, token, finished, completed, lease in events.filter(key__in=chunk).values_list(
            "key", "lease_token", "finished", "completed", "lease_expires"
        ):
            free = lease is None or lease <= now
            found[key] = _Stored(token, finished, frozenset(completed.splitlines()), free)
    return found


def _take(
    db: str, tokens: dict[str, str], now: datetime, expires: datetime, sql: BatchStatements | None
) -> None:
    """The single claim's takeover of each event of ``tokens`` (key: new token), if its
    lease is still free or expired; in key order."""
    if sql is not None:
        moment, until = _db_datetime(db, now), _db_datetime(db, expires)
        params = [[token, until, key, moment] for key, token in sorted(tokens.items())]
        with connections[db].cursor() as cursor:
            cursor.executemany(sql.take, params)
        return
    events = BounceEvent.objects.using(db)
    for key, token in sorted(tokens.items()):
        events.filter(
            Q(lease_expires__isnull=True) | Q(lease_expires__lte=now), key=key, finished=False
        ).update(lease_token=token, lease_expires=expires, attempts=F("attempts") + 1)


def settle_many(db: str, settlements: Sequence[Settlement], *, prepared: bool) -> None:
    """For each settlement, record its handlers as :meth:`DjangoStore.complete` does
    outside a transaction, then end its claim as :meth:`DjangoStore.release` does;
    in one transaction on ``db``, every event in key order."""
    ends: dict[str, tuple[str, str, bool]] = {}
    for settlement in sorted(settlements, key=lambda s: storable(s.claim.key)):
        key = storable(settlement.claim.key)
        names = "".join(handler + "\n" for handler in settlement.completed)
        if key in ends:  # keys the store keeps alike: one row, settled once with both
            token, earlier, finished = ends[key]
            ends[key] = (token, earlier + names, finished or settlement.finished)
        else:
            ends[key] = (settlement.claim.token, names, settlement.finished)
    sql = batch_statements(db) if prepared else None
    with transaction.atomic(using=db):
        if sql is not None:
            params = [
                (token, token, names, finished, key, bool(names) or finished, token)
                for key, (token, names, finished) in ends.items()
            ]
            with connections[db].cursor() as cursor:
                cursor.executemany(sql.settle, params)
            return
        for key, (token, names, finished) in ends.items():
            _settle_one(db, key, token, names, finished)


def _settle_one(db: str, key: str, token: str, names: str, finished: bool) -> None:
    events = BounceEvent.objects.using(db).filter(key=key)
    if not (names or finished):
        # Frees the lease only if this claim still holds it (release(finished=False)).
        events.filter(lease_token=token).update(lease_expires=None, lease_token="")
        return
    held = Q(lease_token=token)
    # lease_expires first: MySQL evaluates SET left to right, with values already assigned.
    changes: dict[str, Any] = {
        "lease_expires": Case(
            When(held, then=Value(None, output_field=models.DateTimeField())),
            default=F("lease_expires"),
        ),
        "lease_token": Case(When(held, then=Value("")), default=F("lease_token")),
    }
    if names:
        changes["completed"] = Concat(F("completed"), Value(names))
    if finished:
        changes["finished"] = True
    events.update(**changes)


@dataclass(frozen=True, slots=True)
class BatchStatements:
    """The plain SQL of batches on one database alias (:data:`~.prepared.VENDORS` only)."""

    insert: Insert  #: new events (ids from the table)
    insert_with_id: Insert  #: new events, each row carrying its id
    rows_per_insert: int
    #: key, lease token, finished, completed, lease free at ``%s``: append ``(%s, ...)``.
    read: str
    #: The takeover (params: token, expires, key, now).
    take: str
    #: Record completions, finish, free the lease if held (see :func:`settle_many`).
    settle: str


@functools.cache
def batch_statements(db: str) -> BatchStatements | None:
    """The :class:`BatchStatements` of database ``db``; None where the ORM must do it."""
    vendor = connections[db].vendor
    if vendor not in VENDORS:
        return None
    table = quote(BounceEvent._meta.db_table)
    key, token, expires, completed, finished, attempts = (
        quote(column_of(BounceEvent, name))
        for name in ("key", "lease_token", "lease_expires", "completed", "finished", "attempts")
    )
    insert = insert_statement(BounceEvent)
    free = f"({expires} IS NULL OR {expires} <= %s)"
    rows = CHUNK
    if vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 32):
        rows = max(1, _OLD_SQLITE_PARAMETERS // (len(insert.fields) + 1))
    held = f"{token} = %s"
    return BatchStatements(
        insert=insert,
        insert_with_id=insert_statement(BounceEvent, with_pk=True),
        rows_per_insert=rows,
        read=f"SELECT {key}, {token}, {finished}, {completed}, {free} FROM {table} WHERE {key} IN",
        take=f"UPDATE {table} SET {token} = %s, {expires} = %s, {attempts} = {attempts} + 1 "
        f"WHERE {key} = %s AND NOT {finished} AND {free}",
        # Every right-hand side reads the row as it was (standard SQL, both VENDORS).
        settle=f"UPDATE {table} SET "
        f"{expires} = CASE WHEN {held} THEN NULL ELSE {expires} END, "
        f"{token} = CASE WHEN {held} THEN '' ELSE {token} END, "
        f"{completed} = {completed} || %s, {finished} = ({finished} OR %s) "
        f"WHERE {key} = %s AND (%s OR {held})",
    )


def _db_datetime(db: str, moment: datetime) -> Any:
    """``moment`` as the database compares it with ``lease_expires``."""
    field = BounceEvent._meta.get_field("lease_expires")
    return field.get_db_prep_value(moment, connections[db], prepared=False)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
