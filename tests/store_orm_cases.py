"""The ORM stores' batch tests' cases: SQLAlchemyStore and DjangoStore on SQLite and PostgreSQL.

:func:`build` makes one :class:`Case` by name (the names of ``tests/store_cases.py``),
with a way to count what a call runs on the database: its statements, and the
transactions they ran in (SQLAlchemy's engine events; Django's
``connection.execute_wrapper``, each statement grouped by its outermost atomic block).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from django.db import connections

from bounce_middleware.adapters.django.models import BounceEvent as DjangoEvent
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.adapters.sqlalchemy import SQLAlchemyStore, create_all, metadata
from bounce_middleware.store import Store
from tests.store_cases import DJANGO_POSTGRESQL

SQLITE = ("sqlalchemy-sqlite", "django-sqlite", "django-sqlite-orm")
POSTGRESQL = ("sqlalchemy-postgresql", "django-postgresql", "django-postgresql-orm")
DJANGO = ("django-sqlite", "django-postgresql", "django-sqlite-orm", "django-postgresql-orm")


def alias_of(name: str) -> str:
    """The Django database alias of case ``name``."""
    return DJANGO_POSTGRESQL if "postgresql" in name else "default"


def cases(*names: str) -> list[Any]:
    """``names`` as params of the ``orm`` fixture, with the Django database marks."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.django_db(transaction=True, databases=[alias_of(name)])
            if name.startswith("django-")
            else (),
            id=name,
        )
        for name in names
    ]


@dataclass
class Counted:
    """What one call did to the database."""

    statements: int = 0
    #: Distinct transactions the statements ran in (committed or not).
    transactions: int = 0
    commits: int = 0


@dataclass
class Case:
    """One ORM store on one database, and a way to count what a call runs there."""

    name: str
    store: Store
    counting: Callable[[], Any]
    end_thread: Callable[[], None] = lambda: None
    close: Callable[[], None] = lambda: None
    rows: Callable[[], list[dict[str, Any]]] = field(default=lambda: [])
    #: Run one SQL statement (no parameters) on the store's database.
    execute: Callable[[str], None] = lambda sql: None
    table: str = ""


def build(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    """The case ``name``, on a fresh database."""
    if name.startswith("sqlalchemy-"):
        return _sqlalchemy(name, tmp_path, request)
    return _django(name)


def _sqlalchemy(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    if name == "sqlalchemy-sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'bounces.sqlite3'}")
        create_all(engine)
    else:
        engine = sa.create_engine(request.getfixturevalue("sqlalchemy_postgresql_url"))
        create_all(engine)
        with engine.begin() as conn:
            tables = ", ".join(table.name for table in metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    @contextmanager
    def counting() -> Iterator[Counted]:
        counted = Counted()

        def statement(*args: Any) -> None:
            counted.statements += 1

        def begin(*args: Any) -> None:
            counted.transactions += 1

        def commit(*args: Any) -> None:
            counted.commits += 1

        listeners = [("before_cursor_execute", statement), ("begin", begin), ("commit", commit)]
        for event, listener in listeners:
            sa.event.listen(engine, event, listener)
        try:
            yield counted
        finally:
            for event, listener in listeners:
                sa.event.remove(engine, event, listener)

    def rows() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            query = sa.select(metadata.tables["bounce_events"]).order_by(sa.text("id"))
            return [dict(row._mapping) for row in conn.execute(query)]

    def execute(sql: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))

    return Case(
        name,
        SQLAlchemyStore(engine),
        counting,
        close=engine.dispose,
        rows=rows,
        execute=execute,
        table="bounce_events",
    )


def _django(name: str) -> Case:
    alias = alias_of(name)
    connection = connections[alias]

    @contextmanager
    def counting() -> Iterator[Counted]:
        counted = Counted()
        # A statement inside an atomic block belongs to its outermost block's transaction;
        # one outside any runs in a transaction of its own (autocommit).
        outermost: list[object] = []

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            if sql == "BEGIN":  # Django's SQLite backend opening the atomic block's transaction
                return execute(sql, params, many, context)
            counted.statements += 1
            block = connection.atomic_blocks[0] if connection.in_atomic_block else object()
            if not any(block is seen for seen in outermost):
                outermost.append(block)
            return execute(sql, params, many, context)

        assert not connection.in_atomic_block
        with connection.execute_wrapper(wrapper):
            yield counted
        counted.transactions = counted.commits = len(outermost)

    def rows() -> list[dict[str, Any]]:
        return [dict(row) for row in DjangoEvent.objects.using(alias).order_by("id").values()]

    store = DjangoStore(using=alias, prepared=not name.endswith("-orm"))

    def execute(sql: str) -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute(sql)

    return Case(
        name,
        store,
        counting,
        end_thread=connections.close_all,
        rows=rows,
        execute=execute,
        table=DjangoEvent._meta.db_table,
    )


def in_threads(case: Case, work: list[Callable[[], Any]]) -> list[Any]:
    """Each of ``work`` in a thread of its own, started together; their results, in order."""
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = work[n]()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            case.end_thread()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    return results


@contextmanager
def slow_insert(case: Case, key: str) -> Iterator[None]:
    """On PostgreSQL, inserting the event ``key`` takes a while: two batches inserting it
    are then surely both half-way through their INSERTs at once."""
    if "postgresql" not in case.name:
        yield
        return
    case.execute(
        "CREATE FUNCTION bounce_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.key = '{key}' THEN PERFORM pg_sleep(0.3); END IF; RETURN NEW; END $$"
    )
    case.execute(
        f"CREATE TRIGGER bounce_test_slow BEFORE INSERT ON {case.table} "
        "FOR EACH ROW EXECUTE FUNCTION bounce_test_slow()"
    )
    try:
        yield
    finally:
        case.execute(f"DROP TRIGGER bounce_test_slow ON {case.table}")
        case.execute("DROP FUNCTION bounce_test_slow()")
