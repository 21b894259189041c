"""SQL for the bounce path, built once per database from the models' metadata.

One webhook delivery runs a handful of short statements. Building each with
the ORM costs several times running it (about 90 us against 25 us for an
``UPDATE`` on SQLite), so the statements are built once per database alias, by
the ORM's own compiler or from ``_meta`` and the backend's ``ops``, and then
executed with fresh parameters. Anything the fast path cannot express for a
backend falls back to the ORM.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Field
from django.db.models.constants import OnConflict

from .models import BounceEvent, BounceNotice

# Backends whose INSERT ... VALUES (...), (...) with "ignore conflicts" Django itself
# writes as insert_statement(IGNORE) ... on_conflict_suffix_sql(IGNORE).
_MULTI_ROW_VENDORS = frozenset({"sqlite", "postgresql", "mysql"})
_SENTINEL = "bounce-middleware-sentinel@invalid"

Prep = Callable[[Any], Any] | None


def execute(using: str, sql: str, params: Sequence[Any]) -> int:
    """Run one statement; return the row count."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _preps(fields: Sequence[Field[Any, Any]], using: str) -> tuple[Prep, ...]:
    # Only values that need adapting (datetimes, bytes) go through get_db_prep_save.
    connection = connections[using]

    def prep(field: Field[Any, Any]) -> Prep:
        if field.get_internal_type() in ("DateTimeField", "BinaryField"):
            return functools.partial(field.get_db_prep_save, connection=connection)
        return None

    return tuple(prep(f) for f in fields)


def _params(preps: tuple[Prep, ...], values: Sequence[Any]) -> list[Any]:
    return [v if p is None else p(v) for p, v in zip(preps, values, strict=True)]


@dataclass(frozen=True, slots=True)
class EventSQL:
    """Statements on :class:`~.models.BounceEvent` for claim, completion and release."""

    insert: str
    columns: tuple[str, ...]  #: attribute names, in the order ``insert`` wants them
    preps: tuple[Prep, ...]
    set_completed: str  #: params: text, key
    release: str  #: params: key, token
    finish: str  #: params: token, token, True, key

    def insert_params(self, values: dict[str, Any]) -> list[Any]:
        """Parameters for ``insert`` from attribute values."""
        return _params(self.preps, [values[name] for name in self.columns])


@functools.cache
def event_sql(using: str) -> EventSQL:
    """The :class:`EventSQL` of database ``using``."""
    quote = connections[using].ops.quote_name
    meta = BounceEvent._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    column = {f.attname: quote(f.get_attname_column()[1] or f.attname) for f in fields}
    table = quote(meta.db_table)
    token, expires = column["lease_token"], column["lease_expires"]
    lease = f"{token} = '', {expires} = NULL"
    # Frees the lease only if this claim still holds it. lease_expires is set first:
    # MySQL evaluates SET left to right, with values already assigned.
    lease_if_held = (
        f"{expires} = CASE WHEN {token} = %s THEN NULL ELSE {expires} END, "
        f"{token} = CASE WHEN {token} = %s THEN '' ELSE {token} END"
    )
    where_key = f"WHERE {column['key']} = %s"
    return EventSQL(
        insert=f"INSERT INTO {table} ({', '.join(column.values())}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})",
        columns=tuple(column),
        preps=_preps(fields, using),
        set_completed=f"UPDATE {table} SET {column['completed']} = %s {where_key}",
        release=f"UPDATE {table} SET {lease} {where_key} AND {token} = %s",
        finish=f"UPDATE {table} SET {lease_if_held}, {column['finished']} = %s {where_key}",
    )


@dataclass(frozen=True, slots=True)
class NoticeSQL:
    """``INSERT`` of notices that skips those already there (same event and user)."""

    head: str
    row: str
    tail: str
    columns: tuple[str, ...]
    preps: tuple[Prep, ...]

    def insert(self, using: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (attribute values) in one statement."""
        sql = f"{self.head} {', '.join([self.row] * len(rows))} {self.tail}"
        params = [p for row in rows for p in _params(self.preps, [row[c] for c in self.columns])]
        execute(using, sql, params)


@functools.cache
def notice_sql(using: str) -> NoticeSQL | None:
    """The :class:`NoticeSQL` of database ``using``, or None where the ORM must do it."""
    connection = connections[using]
    if connection.vendor not in _MULTI_ROW_VENDORS:
        return None
    ops = connection.ops
    meta = BounceNotice._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    columns = ", ".join(ops.quote_name(f.get_attname_column()[1] or f.attname) for f in fields)
    return NoticeSQL(
        head=f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} "
        f"{ops.quote_name(meta.db_table)} ({columns}) VALUES",
        row=f"({', '.join(['%s'] * len(fields))})",
        tail=ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None),
        columns=tuple(f.attname for f in fields),
        preps=_preps(fields, using),
    )


@dataclass(frozen=True, slots=True)
class UserLookup:
    """The ORM's own SQL for ``<EMAIL_FIELD>__iexact=...`` on the user model, compiled once."""

    sql: str
    params: tuple[Any, ...]
    position: int  #: which parameter is the address
    prep: Callable[[str], Any]

    def user_ids(self, using: str, email: str) -> list[Any]:
        """Primary keys of the users whose address is ``email``, ignoring case."""
        params = list(self.params)
        params[self.position] = self.prep(email)
        with connections[using].cursor() as cursor:
            cursor.execute(self.sql, params)
            return [row[0] for row in cursor.fetchall()]


@functools.cache
def user_lookup(using: str, user_label: str) -> UserLookup | None:
    """The :class:`UserLookup` for database ``using``, or None where the ORM must do it.

    ``_base_manager``: every user with the address, whatever the default
    manager filters, and a query that does not change at run time.
    """
    user_model = get_user_model()
    field = user_model.get_email_field_name()
    query = (
        user_model._base_manager.using(using)
        .filter(**{f"{field}__iexact": _SENTINEL})
        .values_list("pk", flat=True)
        .query
    )
    sql, params = query.get_compiler(using=using).as_sql()
    prep = connections[using].ops.prep_for_iexact_query
    positions = [i for i, p in enumerate(params) if p == prep(_SENTINEL)]
    if len(positions) != 1:
        return None
    return UserLookup(sql, tuple(params), positions[0], prep)
