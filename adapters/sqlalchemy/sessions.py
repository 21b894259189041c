"""Sessions and the one write the store and the user handler share: insert unless present.

:func:`session_scope` is the unit of work everything here uses by default;
:func:`insert_missing` is ``INSERT ... ON CONFLICT DO NOTHING`` where the
database has it (SQLite, PostgreSQL), so a unique key, never a
check-then-insert, decides between concurrent writers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from bounce_middleware.errors import ConfigurationError

__all__ = [
    "SessionFactory",
    "UnitOfWork",
    "insert_all_missing",
    "insert_missing",
    "session_factory",
    "session_scope",
]

#: A zero-argument callable returning a plain ``Session`` (a ``sessionmaker``).
SessionFactory = Callable[[], orm.Session]

#: A zero-argument callable returning a context manager that yields a session
#: and commits on success, rolls back on error (see :func:`session_scope`).
UnitOfWork = Callable[[], AbstractContextManager[orm.Session]]

# The dialects whose own insert() has on_conflict_do_nothing(); others use a savepoint.
_ON_CONFLICT_INSERTS: dict[str, Callable[[Any], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[orm.Session]:
    """A new session from ``factory``: commit on success, roll back on error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def session_factory(bind: Any) -> SessionFactory:
    """A session factory for ``bind``: an ``Engine``/``Connection``, or a ready factory."""
    if isinstance(bind, sa.Engine | sa.Connection):
        return orm.sessionmaker(bind=bind)
    if callable(bind):
        return bind  # type: ignore[no-any-return]
    raise ConfigurationError("expected an Engine, a sessionmaker or a callable returning a Session")


def dialect_of(session: orm.Session, model: type[Any] | None = None) -> str:
    """The name of the dialect (``sqlite``, ``postgresql``...) the session uses for
    ``model``'s table (default: the session's default bind)."""
    mapper = sa.inspect(model) if model is not None else None
    return session.get_bind(mapper=mapper).dialect.name


def insert_missing(
    session: orm.Session,
    model: type[Any],
    rows: Sequence[Mapping[str, Any]],
    unique: Sequence[str],
) -> int:
    """Insert the ``rows`` whose ``unique`` columns are not in the table yet; the count inserted.

    One statement where the dialect allows it; elsewhere one savepoint per row,
    a duplicate's ``IntegrityError`` rolled back to it. ORM-enabled statements,
    so ``zope.sqlalchemy`` sees the session changed and commits it.
    """
    if not rows:
        return 0
    make = _ON_CONFLICT_INSERTS.get(dialect_of(session, model))
    if make is not None:
        statement = make(model).values(list(rows)).on_conflict_do_nothing(index_elements=unique)
        # An INSERT's rowcount is kept only when asked (SQLAlchemy 2.0.28+).
        return rowcount(session.execute(statement.execution_options(preserve_rowcount=True)))
    inserted = 0
    for row in rows:
        try:
            with session.begin_nested():
                session.execute(sa.insert(model).values(dict(row)))
        except sa_exc.IntegrityError:
            continue
        inserted += 1
    return inserted


def insert_all_missing(
    session: orm.Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    unique: Sequence[str],
) -> None:
    """:func:`insert_missing` for many rows, in their order, without counting them.

    Where the dialect has ``ON CONFLICT DO NOTHING``, one statement run with every
    row's parameters (the driver batches them; building one statement of
    thousands of parameters costs SQLAlchemy more than running it). Core, not
    ORM-enabled: for the store's own sessions, which commit themselves.
    """
    if not rows:
        return
    make = _ON_CONFLICT_INSERTS.get(session.get_bind(clause=table).dialect.name)
    if make is not None:
        session.execute(make(table).on_conflict_do_nothing(index_elements=unique), list(rows))
        return
    for row in rows:  # as insert_missing: a savepoint each, a duplicate rolled back to it
        try:
            with session.begin_nested():
                session.execute(sa.insert(table).values(dict(row)))
        except sa_exc.IntegrityError:
            continue


def rowcount(result: Any) -> int:
    """Rows matched by an INSERT/UPDATE result (0 where the driver does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)
