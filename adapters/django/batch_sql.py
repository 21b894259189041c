"""The plain SQL of ``DjangoStore``'s batches on SQLite and PostgreSQL (:data:`~.prepared.VENDORS`).

Written once per database alias from the model's metadata, as the hot path's
statements are (:mod:`.prepared`), and run through Django's cursor.

- SQLite runs in the process: many rows to an ``INSERT``, keys in chunks of
  ``IN (...)``, ``executemany`` for the ``UPDATE``\\ s.
- PostgreSQL gets each step of a batch as one statement over arrays
  (``unnest``), whatever the batch's size: with Django's client-side binding a
  statement of thousands of placeholders, or a thousand statements, costs more
  in the driver than in the server. Rows are inserted and locked in key order
  (``ORDER BY``, ``FOR NO KEY UPDATE``), so that two batches sharing events wait
  for each other instead of deadlocking.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connections

from .models import BounceEvent
from .prepared import VENDORS, column_of, execute, insert_statement, quote

__all__ = ["BatchSQL", "Ends", "StoredRow", "batch_sql"]

#: key, lease token, finished, completed handlers (one per line), lease free or expired.
StoredRow = tuple[str, str, bool, str, bool]
#: For each key: the claim's token, the handler names to append (each + newline), finished.
Ends = Mapping[str, tuple[str, str, bool]]

#: Rows per multi-row ``INSERT`` and keys per ``IN (...)`` on SQLite.
CHUNK = 500
# SQLite before 3.32 allows 999 parameters to a statement.
_OLD_SQLITE_PARAMETERS = 999


class BatchSQL:
    """The statements of batches on one database alias; see the module's docstring."""

    def __init__(self, vendor: str) -> None:
        self.table = quote(BounceEvent._meta.db_table)
        names = ("key", "lease_token", "lease_expires", "completed", "finished", "attempts")
        key, token, expires, completed, finished, attempts = (
            quote(column_of(BounceEvent, name)) for name in names
        )
        self.key = key
        self.insert = insert_statement(BounceEvent)
        self.insert_with_id = insert_statement(BounceEvent, with_pk=True)
        self.rows_per_insert = CHUNK
        if vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 32):
            self.rows_per_insert = max(1, _OLD_SQLITE_PARAMETERS // len(self.insert.fields))
        free = f"({expires} IS NULL OR {expires} <= %s)"
        #: Returns :data:`StoredRow` (param: now); append the condition on the keys.
        self.read_head = (
            f"SELECT {key}, {token}, {finished}, {completed}, {free} FROM {self.table} WHERE"
        )

        def take(new_token: str) -> tuple[str, str]:
            # The single claim's takeover (params: expires, now).
            return (
                f"UPDATE {self.table} SET {token} = {new_token}, {expires} = %s, "
                f"{attempts} = {attempts} + 1"
            ), f"NOT {finished} AND {free}"

        def settle(held_by: str, names: str, finishes: str, writes: str) -> tuple[str, str]:
            # Every right-hand side reads the row as it was (standard SQL, both VENDORS).
            held = f"{token} = {held_by}"
            return (
                f"UPDATE {self.table} SET "
                f"{expires} = CASE WHEN {held} THEN NULL ELSE {expires} END, "
                f"{token} = CASE WHEN {held} THEN '' ELSE {token} END, "
                f"{completed} = {completed} || {names}, {finished} = ({finished} OR {finishes})"
            ), f"({writes} OR {held})"

        self._take = take
        self._settle = settle

    def insert_rows(self, db: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert the ``rows`` whose key is not stored yet, in their order."""
        statement = self.insert_with_id if "id" in rows[0] else self.insert
        for chunk in _chunks(rows, self.rows_per_insert):
            statement.run(db, chunk)

    def read(self, db: str, keys: Sequence[str], now: Any) -> list[StoredRow]:
        """The stored events of ``keys``; ``now`` as the database compares it."""
        found: list[StoredRow] = []
        with connections[db].cursor() as cursor:
            for chunk in _chunks(keys, CHUNK):
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"{self.read_head} {self.key} IN ({marks})", [now, *chunk])
                found.extend(cursor.fetchall())
        return found

    def take(self, db: str, tokens: Mapping[str, str], now: Any, expires: Any) -> None:
        """Give each event of ``tokens`` (key: token) its new lease, if still free or expired."""
        update, where = self._take("%s")
        sql = f"{update} WHERE {self.key} = %s AND {where}"
        params = [(token, expires, key, now) for key, token in sorted(tokens.items())]
        with connections[db].cursor() as cursor:
            cursor.executemany(sql, params)

    def settle(self, db: str, ends: Ends, others: Sequence[tuple[str, str]] = ()) -> None:
        """Append each event's handlers, finish it, free its lease if the token holds it;
        an event with nothing to record whose lease is not held is left alone."""
        update, where = self._settle("%s", "%s", "%s", "%s")
        sql = f"{update} WHERE {self.key} = %s AND {where}"
        # Placeholders in the order of the SQL: token twice, names, finished, key, writes, token.
        params = sorted(
            [
                *(
                    (token, token, names, finished, key, bool(names) or finished, token)
                    for key, (token, names, finished) in ends.items()
                ),
                # A key's further claims free the lease if they hold it; nothing else.
                *((token, token, "", False, key, False, token) for key, token in others),
            ],
            key=lambda row: (row[4], row[0]),
        )
        with connections[db].cursor() as cursor:
            cursor.executemany(sql, params)


class PostgresBatchSQL(BatchSQL):
    """PostgreSQL: each step one statement over arrays, in key order.

    The arrays' columns are named ``batch_*``: no column of the events' table has
    such a name, so the table's own columns need no qualifying.
    """

    def insert_rows(self, db: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert the ``rows`` whose key is not stored yet, in key order."""
        statement = self.insert_with_id if "id" in rows[0] else self.insert
        connection = connections[db]
        columns = ", ".join(quote(field.column) for field in statement.fields)
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in statement.fields)
        execute(
            db,
            f"INSERT INTO {self.table} ({columns}) SELECT * FROM unnest({arrays}) "
            f"AS batch ({columns}) ORDER BY {self.key} ON CONFLICT DO NOTHING",
            statement.columns(db, rows),
        )

    def read(self, db: str, keys: Sequence[str], now: Any) -> list[StoredRow]:
        """The stored events of ``keys``; ``now`` as the database compares it."""
        with connections[db].cursor() as cursor:
            cursor.execute(f"{self.read_head} {self.key} = ANY(%s)", [now, list(keys)])
            return list(cursor.fetchall())

    def take(self, db: str, tokens: Mapping[str, str], now: Any, expires: Any) -> None:
        """Give each event of ``tokens`` (key: token) its new lease, if still free or expired."""
        keys = sorted(tokens)
        self._lock(db, keys)
        update, where = self._take("batch.batch_token")
        execute(
            db,
            f"{update} FROM unnest(%s::text[], %s::text[]) AS batch (batch_key, batch_token) "
            f"WHERE {self.key} = batch.batch_key AND {where}",
            [expires, keys, [tokens[key] for key in keys], now],
        )

    def settle(self, db: str, ends: Ends, others: Sequence[tuple[str, str]] = ()) -> None:
        """Append each event's handlers, finish it, free its lease if the token holds it."""
        keys = sorted(ends)
        self._lock(db, keys)
        tokens, names, finishes = ([ends[k][n] for k in keys] for n in range(3))
        writes = [bool(n) or f for n, f in zip(names, finishes, strict=True)]
        update, where = self._settle(
            "batch.batch_token", "batch.batch_names", "batch.batch_finished", "batch.batch_writes"
        )
        execute(
            db,
            f"{update} FROM unnest(%s::text[], %s::text[], %s::text[], %s::boolean[], "
            "%s::boolean[]) "
            "AS batch (batch_key, batch_token, batch_names, batch_finished, batch_writes) "
            f"WHERE {self.key} = batch.batch_key AND {where}",
            [keys, tokens, names, finishes, writes],
        )
        if others:  # a key's further claims free its lease if they hold it (rows locked above)
            update, where = self._settle("batch.batch_token", "''", "FALSE", "FALSE")
            execute(
                db,
                f"{update} FROM unnest(%s::text[], %s::text[]) AS batch (batch_key, batch_token) "
                f"WHERE {self.key} = batch.batch_key AND {where}",
                [[k for k, _ in others], [t for _, t in others]],
            )

    def _lock(self, db: str, keys: list[str]) -> None:
        # The row locks the UPDATE takes, taken first in key order: an UPDATE ... FROM
        # visits rows in whatever order its plan chooses.
        execute(
            db,
            f"SELECT 1 FROM {self.table} WHERE {self.key} = ANY(%s) "
            f"ORDER BY {self.key} FOR NO KEY UPDATE",
            [keys],
        )


@functools.cache
def batch_sql(db: str) -> BatchSQL | None:
    """The :class:`BatchSQL` of database ``db``; None where the ORM must do it."""
    vendor = connections[db].vendor
    if vendor not in VENDORS:
        return None
    return PostgresBatchSQL(vendor) if vendor == "postgresql" else BatchSQL(vendor)


def db_datetime(db: str, moment: datetime) -> Any:
    """``moment`` as the database compares it with ``lease_expires``."""
    field = BounceEvent._meta.get_field("lease_expires")
    return field.get_db_prep_value(moment, connections[db], prepared=False)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
