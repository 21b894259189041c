"""Bring tables made by version 0.1 up to the current schema, in place.

Version 0.1 limited text columns (``String(64)``, ``String(320)``...), which
PostgreSQL enforces: a longer value was a ``DataError``, answered 503 on every
retry. It also compared addresses with ``lower()``, ASCII-only on SQLite. The
current schema has unbounded text columns, a folded address column
(``email_key``) on events and notices, and a table of rejected requests.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bounce_middleware.model import fold_address
from bounce_middleware.store import storable

from .tables import metadata

__all__ = ["upgrade_tables"]

# Columns version 0.1 declared with a length, per table.
_BOUNDED = {
    "bounce_events": ("key", "provider", "email", "kind", "type"),
    "bounce_event_handlers": ("event_key", "handler"),
    "bounce_notices": ("user_id", "email", "event_key", "kind", "type"),
}
# Tables that gained a folded copy of their address column.
_FOLDED = ("bounce_events", "bounce_notices")
# Version 0.1 indexed the address of every event; an unbounded column is not indexed.
_OLD_INDEX = ("bounce_events", "ix_bounce_events_email")


def upgrade_tables(bind: sa.Engine | sa.Connection) -> list[str]:
    """Upgrade this library's tables in place; returns what was done, one line per step.

    Idempotent: on current tables it does nothing and returns ``[]``. Run it
    once after upgrading the library (with Alembic: from a migration's
    ``upgrade()``, as ``upgrade_tables(op.get_bind())``). Missing tables are
    created. Column types are changed on PostgreSQL; SQLite never enforced
    their lengths, and other databases need their own ``ALTER`` statements.
    """
    if isinstance(bind, sa.Engine):
        with bind.begin() as connection:
            return upgrade_tables(connection)
    done: list[str] = []
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    table, index = _OLD_INDEX
    if table in existing and index in {i["name"] for i in inspector.get_indexes(table)}:
        bind.execute(sa.text(f"DROP INDEX {_quote(bind, index)}"))
        done.append(f"dropped index {index}")
    for table in _FOLDED:
        if table in existing and "email_key" not in _columns(inspector, table):
            _add_folded_column(bind, table)
            done.append(f"added {table}.email_key")
    if bind.dialect.name == "postgresql":
        for table, columns in _BOUNDED.items():
            if table not in existing:
                continue
            types = {c["name"]: c["type"] for c in inspector.get_columns(table)}
            for column in columns:
                if getattr(types.get(column), "length", None) is not None:
                    bind.execute(
                        sa.text(
                            f"ALTER TABLE {_quote(bind, table)} ALTER COLUMN "
                            f"{_quote(bind, column)} TYPE TEXT"
                        )
                    )
                    done.append(f"{table}.{column} is TEXT")
    missing = [t for t in metadata.sorted_tables if t.name not in existing]
    if missing:
        metadata.create_all(bind, tables=missing)
        done.extend(f"created {t.name}" for t in missing)
    return done


def _columns(inspector: Any, table: str) -> set[str]:
    return {c["name"] for c in inspector.get_columns(table)}


def _quote(bind: sa.Connection, name: str) -> str:
    return str(bind.dialect.identifier_preparer.quote(name))


def _add_folded_column(bind: sa.Connection, table: str) -> None:
    quoted = _quote(bind, table)
    # NOT NULL needs a default for the rows already there; each is then filled in Python,
    # since fold_address (NFKC + casefold) is not any database's lower().
    bind.execute(sa.text(f"ALTER TABLE {quoted} ADD COLUMN email_key TEXT NOT NULL DEFAULT ''"))
    rows = bind.execute(sa.text(f"SELECT id, email FROM {quoted}")).all()
    update = sa.text(f"UPDATE {quoted} SET email_key = :key WHERE id = :id")
    batch = [{"id": row_id, "key": fold_address(storable(email or ""))} for row_id, email in rows]
    if batch:
        bind.execute(update, batch)
