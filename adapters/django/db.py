"""Database helpers: connection housekeeping (after an error too) and address matching.

Django closes or recycles connections on ``request_started`` and
``request_finished``. The bounce endpoint answers before Django's handler
runs, so those signals never fire for it; :func:`connection_scope` does the
same work around one webhook delivery instead.

Addresses are compared folded (:func:`~bounce_middleware.model.fold_address`:
NFKC, then Unicode case folding). The adapter's own tables keep a folded copy
computed in Python; the project's user table has none, so :class:`Folded`
folds it in SQL: on SQLite, whose ``lower()`` folds ASCII only, with the
function ``bounce_fold`` (``fold_address`` itself) registered on every
connection; elsewhere with ``LOWER()``, Unicode-aware on PostgreSQL under a
UTF-8 locale.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Func, TextField
from django.db.models.sql.compiler import SQLCompiler

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import fold_address
from bounce_middleware.store import unavailable

_depth: ContextVar[int] = ContextVar("bounce_middleware_connection_depth", default=0)

#: The SQL function registered on SQLite connections.
FOLD_FUNCTION = "bounce_fold"


def close_old_connections() -> None:
    """Django's ``close_old_connections``, sparing a connection inside a transaction.

    A connection in an ``atomic`` block belongs to code that called us (a
    test, a management command); closing it would break that transaction.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


@contextmanager
def connection_scope() -> Iterator[None]:
    """Close unusable or expired connections before and after the outermost scope.

    Nested scopes (the handler inside the middleware's delivery) do nothing,
    so one delivery uses one connection even with ``CONN_MAX_AGE = 0``.
    """
    depth = _depth.get()
    if depth == 0:
        close_old_connections()
    token = _depth.set(depth + 1)
    try:
        yield
    finally:
        _depth.reset(token)
        if depth == 0:
            close_old_connections()


def store_unavailable(db: str, where: str, exc: DatabaseError) -> StoreUnavailable:
    """:func:`~bounce_middleware.store.unavailable` for a store method on database ``db``.

    Outside a transaction it first closes the connection if the error left it
    unusable (e.g. the server ended it), as Django does between requests, so that
    the next try (the core retries a completion) opens a new one instead of
    failing the same way. Inside one, the transaction's owner decides.
    """
    connection = connections[db]
    if not connection.in_atomic_block:
        with suppress(DatabaseError):
            connection.close_if_unusable_or_obsolete()
    return unavailable(f"bounce store ({db}): {where}", exc)


def _fold(value: object) -> object:
    # NULL (and any non-text value) passes through, as lower() does.
    return fold_address(value) if isinstance(value, str) else value


def register_fold(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: add ``bounce_fold`` to a new SQLite connection.

    Deterministic, so that a project may index ``bounce_fold(email)`` on its
    user table (every connection writing that table then needs the function:
    Django's do, through this receiver).
    """
    if connection.vendor == "sqlite":
        connection.connection.create_function(FOLD_FUNCTION, 1, _fold, deterministic=True)


def register_fold_on_open_connections() -> None:
    """:func:`register_fold` for connections opened before the app was ready."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            register_fold(conn)


class Folded(Func):
    """An address folded in SQL: ``bounce_fold(x)`` on SQLite, ``LOWER(x)`` elsewhere.

    Index it on a large user table to keep the user lookup a search, e.g. in a
    custom user model's ``Meta.indexes = [models.Index(Folded("email"), name=...)]``.
    """

    function = "LOWER"
    output_field = TextField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> Any:
        """``bounce_fold(x)``: SQLite's ``lower()`` folds ASCII letters only."""
        return self.as_sql(compiler, connection, function=FOLD_FUNCTION, **extra_context)
