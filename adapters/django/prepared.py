"""The hot path's statements, prepared once per database from the models' public metadata.

A delivery of a new event runs four short statements: the claim ``INSERT``,
the user lookup, the notices ``INSERT`` and the completion ``UPDATE``. Building
each with the ORM costs several times running it (on SQLite about 300 us
against 30 us), so on the databases where this plain SQL is known right
(:data:`VENDORS`) they are written once per alias from ``Model._meta`` (table
and column names, quoted as standard SQL) and run through Django's cursor with
values prepared by each field's own ``get_db_prep_save``. Everywhere else, and
for everything off the hot path, the store and the handler use the ORM.

``INSERT ... ON CONFLICT DO NOTHING`` (SQLite 3.24+, PostgreSQL 9.5+) leaves a
caller's transaction usable after a duplicate, with no savepoint.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Field, Model

from .db import FOLD_FUNCTION
from .models import BounceEvent, BounceNotice

#: Databases whose SQL these statements are written in.
VENDORS = frozenset({"sqlite", "postgresql"})
# Values the drivers take as they are; others go through get_db_prep_save.
_PLAIN_FIELDS = frozenset({"TextField", "CharField", "BooleanField", "PositiveIntegerField"})


def quote(name: str | None) -> str:
    """An identifier quoted as standard SQL (both :data:`VENDORS` read it so)."""
    assert name, "a concrete field has a column"
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Insert:
    """``INSERT`` of rows given as ``{attname: value}``, skipping those whose key exists."""

    head: str
    row: str
    fields: tuple[Field[Any, Any], ...]
    plain: tuple[bool, ...]

    def run(self, db: str, rows: Sequence[dict[str, Any]]) -> int:
        """Insert ``rows``; return how many were new."""
        connection = connections[db]
        params = [
            value if plain else field.get_db_prep_save(value, connection)
            for row in rows
            for field, plain in zip(self.fields, self.plain, strict=True)
            for value in (row[field.attname],)
        ]
        sql = f"{self.head} {', '.join([self.row] * len(rows))} ON CONFLICT DO NOTHING"
        return execute(db, sql, params)

    def columns(self, db: str, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        """The values of ``rows``, prepared as :meth:`run` does, one list per field."""
        connection = connections[db]
        return [
            [row[field.attname] for row in rows]
            if plain
            else [field.get_db_prep_save(row[field.attname], connection) for row in rows]
            for field, plain in zip(self.fields, self.plain, strict=True)
        ]


def column_fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    """The fields of ``model`` that are columns of its table, through the public
    ``_meta.get_fields()``: concrete fields (many-to-many ones have a table of their own).
    """
    return tuple(
        f
        for f in model._meta.get_fields()
        if isinstance(f, Field) and f.concrete and not f.many_to_many
    )


def insert_statement(
    model: type[Model], skip: frozenset[str] = frozenset(), *, with_pk: bool = False
) -> Insert:
    """The :class:`Insert` of ``model``'s columns but ``skip``; its primary key only
    ``with_pk`` (rows then carry their ids)."""
    fields = tuple(
        f for f in column_fields(model) if (with_pk or not f.primary_key) and f.attname not in skip
    )
    columns = ", ".join(quote(f.column) for f in fields)
    return Insert(
        head=f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES",
        row=f"({', '.join(['%s'] * len(fields))})",
        fields=fields,
        plain=tuple(f.get_internal_type() in _PLAIN_FIELDS for f in fields),
    )


@dataclass(frozen=True, slots=True)
class Statements:
    """The prepared statements of one database alias."""

    claim: Insert  #: a new event, leased
    notices: Insert  #: one notice per user (``shown_at`` left NULL)
    #: Append ``%s`` to ``completed`` while the claim holds the lease (params: name, key, token);
    #: ``finish`` also marks the event finished and frees the lease.
    complete: str
    finish: str
    users: str | None  #: the users whose folded address equals ``%s``; None: use the ORM


@functools.cache
def statements(db: str) -> Statements | None:
    """The :class:`Statements` of database ``db``; None where the ORM must do it."""
    vendor = connections[db].vendor
    if vendor not in VENDORS:
        return None
    table = quote(BounceEvent._meta.db_table)
    key, token, expires, completed, finished = (
        quote(column_of(BounceEvent, name))
        for name in ("key", "lease_token", "lease_expires", "completed", "finished")
    )
    held = f"WHERE {key} = %s AND {token} = %s"
    append = f"{completed} = {completed} || %s"
    return Statements(
        claim=insert_statement(BounceEvent),
        notices=insert_statement(BounceNotice, skip=frozenset({"shown_at"})),
        complete=f"UPDATE {table} SET {append} {held}",
        finish=f"UPDATE {table} SET {append}, {finished} = %s, {token} = '', {expires} = NULL "
        + held,
        users=_users(FOLD_FUNCTION if vendor == "sqlite" else "LOWER"),
    )


def column_of(model: type[Model], name: str) -> str | None:
    """The column of field ``name`` in ``model``'s own table; None for a relation or a
    parent model's field."""
    field = model._meta.get_field(name)
    # A column of this model's own table (not a relation, not a parent model's field).
    if getattr(field, "model", None) is not model:
        return None
    column: str | None = getattr(field, "column", None)
    return column


def _users(fold: str) -> str | None:
    user_model = get_user_model()
    column = column_of(user_model, user_model.get_email_field_name())
    if column is None or user_model._meta.pk is None:
        return None  # e.g. the address lives in a parent model's table: the ORM joins it
    table = quote(user_model._meta.db_table)
    pk, column = quote(user_model._meta.pk.column), quote(column)
    # The base table, as _base_manager reads it: every user, whatever a default manager filters.
    return f"SELECT {table}.{pk} FROM {table} WHERE {fold}({table}.{column}) = {fold}(%s)"


def execute(db: str, sql: str, params: Sequence[Any]) -> int:
    """Run one statement through Django's cursor; return its row count."""
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def fetch_column(db: str, sql: str, params: Sequence[Any]) -> list[Any]:
    """The first column of every row a query returns."""
    with connections[db].cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]
