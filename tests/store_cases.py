"""Every shipped store, each on a real database, for the store contract suite.

:func:`build` makes one :class:`StoreCase` by name: ``memory``, ``sqlite``,
``sqlalchemy-sqlite``, ``sqlalchemy-postgresql``, ``django-sqlite`` and
``django-postgresql``, and ``django-sqlite-orm`` and ``django-postgresql-orm``:
``DjangoStore(prepared=False)``, the ORM path every other database takes. The
fixture ``store_case`` in ``tests/conftest.py`` parametrises a test over all of
them (:data:`PARAMS` carries the pytest-django marks the Django cases need).
PostgreSQL is the test session's real server (``tests/postgres.py``); Django's
PostgreSQL cases use the ``postgresql`` alias of ``tests/django_settings.py``.

A case also gives the tests a way into the database behind the store
(``execute``, ``set_kind``), to write what only another version of the library
could have written, or to break the database on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import MemoryStore, Store

if TYPE_CHECKING:
    import sqlalchemy as sa

#: The PostgreSQL alias ``tests/django_settings.py`` defines for the Django store.
DJANGO_POSTGRESQL = "postgresql"

#: Every shipped store, on every database it is tested on.
NAMES = (
    "memory",
    "sqlite",
    "sqlalchemy-sqlite",
    "sqlalchemy-postgresql",
    "django-sqlite",
    "django-postgresql",
    "django-sqlite-orm",
    "django-postgresql-orm",
)
#: The stores that keep their records in a database (not in process memory).
DATABASE_NAMES = NAMES[1:]

# pytest-django opens the test databases only for tests marked so.
_SQLITE_MARK = pytest.mark.django_db(transaction=True)
_POSTGRESQL_MARK = pytest.mark.django_db(transaction=True, databases=[DJANGO_POSTGRESQL])
_MARKS = {
    "django-sqlite": _SQLITE_MARK,
    "django-postgresql": _POSTGRESQL_MARK,
    "django-sqlite-orm": _SQLITE_MARK,
    "django-postgresql-orm": _POSTGRESQL_MARK,
}


def params(names: tuple[str, ...] = NAMES) -> list[Any]:
    """``names`` as fixture or ``parametrize`` params, with the marks each needs."""
    return [pytest.param(name, marks=_MARKS.get(name, ()), id=name) for name in names]


PARAMS = params()


@dataclass
class StoreCase:
    """One store on one database, with a way into that database for the tests."""

    name: str
    store: Store
    #: Run one SQL statement (no parameters) on the store's database.
    execute: Callable[[str], None] | None = None
    #: Every table the store writes to.
    tables: tuple[str, ...] = ()
    #: Write a raw ``kind`` value for an event key, as a newer version might.
    set_kind: Callable[[str, str], None] | None = None
    #: Called by each thread a test starts, before it ends (Django: close its connection).
    end_thread: Callable[[], None] = lambda: None
    close: Callable[[], None] = lambda: None
    #: The database's own name for what follows (for messages).
    database: str = field(default="")

    @contextmanager
    def tables_renamed(self) -> Iterator[None]:
        """Every table of the store renamed away (a broken database), then put back."""
        assert self.execute is not None, f"{self.name} keeps no tables"
        for table in self.tables:
            self.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
        try:
            yield
        finally:
            for table in self.tables:
                self.execute(f"ALTER TABLE {table}_away RENAME TO {table}")


def build(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreCase:
    """The case ``name``, on a fresh database."""
    if name == "memory":
        return StoreCase(name, MemoryStore())
    if name == "sqlite":
        return _sqlite(tmp_path)
    if name.startswith("sqlalchemy-"):
        return _sqlalchemy(name, tmp_path, request)
    if name.startswith("django-"):
        return _django(name)
    raise AssertionError(f"unknown store case {name}")


def _sqlite(tmp_path: Path) -> StoreCase:
    import sqlite3

    path = tmp_path / "bounces.sqlite3"
    store = SQLiteStore(path)

    def execute(sql: str) -> None:
        with sqlite3.connect(path, isolation_level=None) as conn:
            conn.execute(sql)
        conn.close()

    def set_kind(key: str, kind: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE bounce_event SET kind = ? WHERE key = ?", (kind, key))
        conn.close()

    return StoreCase(
        "sqlite",
        store,
        execute=execute,
        tables=("bounce_event", "bounce_completion", "bounce_rejected"),
        set_kind=set_kind,
        close=store.close,
        database=str(path),
    )


def _sqlalchemy(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreCase:
    import sqlalchemy as sa

    from bounce_middleware.adapters.sqlalchemy import (
        BounceEvent,
        CompletedHandler,
        Rejection,
        SQLAlchemyStore,
        create_all,
        metadata,
    )

    engine: sa.Engine
    if name == "sqlalchemy-sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'bounces.sqlite3'}")
        create_all(engine)
    else:
        # One database for the session (creating one per test costs more than the test):
        # the tables are created once and emptied before each test.
        url = request.getfixturevalue("sqlalchemy_postgresql_url")
        engine = sa.create_engine(url, pool_size=20, max_overflow=20)
        create_all(engine)
        with engine.begin() as conn:
            tables = ", ".join(table.name for table in metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    def execute(sql: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))

    def set_kind(key: str, kind: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.update(BounceEvent).where(BounceEvent.key == key).values(kind=kind))

    return StoreCase(
        name,
        SQLAlchemyStore(engine),
        execute=execute,
        tables=tuple(_table_name(m) for m in (BounceEvent, CompletedHandler, Rejection)),
        set_kind=set_kind,
        close=engine.dispose,
        database=engine.url.render_as_string(hide_password=True),
    )


def _table_name(model: Any) -> str:
    table: sa.Table = model.__table__
    return table.name


def _django(name: str) -> StoreCase:
    from django.db import connections

    from bounce_middleware.adapters.django.models import BounceEvent, RejectedRequest
    from bounce_middleware.adapters.django.store import DjangoStore

    # "-orm": without the hot path's prepared statements (see adapters/django/prepared.py).
    prepared = not name.endswith("-orm")
    alias = "default" if name.startswith("django-sqlite") else DJANGO_POSTGRESQL
    connection = connections[alias]
    assert connection.vendor == ("sqlite" if alias == "default" else "postgresql"), (
        f"the Django alias {alias!r} is a {connection.vendor} database"
    )

    def execute(sql: str) -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute(sql)

    def set_kind(key: str, kind: str) -> None:
        BounceEvent.objects.using(alias).filter(key=key).update(kind=kind)

    return StoreCase(
        name,
        DjangoStore(using=alias, prepared=prepared),
        execute=execute,
        tables=(BounceEvent._meta.db_table, RejectedRequest._meta.db_table),
        set_kind=set_kind,
        end_thread=connections.close_all,
        database=alias,
    )
