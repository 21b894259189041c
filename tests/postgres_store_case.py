"""PostgresStore on the test session's PostgreSQL server, as a contract-suite case.

One database for the session (creating one per test costs more than most
tests): the store creates its tables there on first use, and each case empties
them first. ``execute`` and ``set_kind`` reach the database on a connection
of their own, as another version of the library or a broken server would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from bounce_middleware.postgres_store import TABLES, PostgresStore
from tests.postgres import PostgresServer
from tests.store_cases import StoreCase

#: The case's name; "postgresql" in it tells the shared tests to write PL/pgSQL triggers.
NAME = "postgres-store-postgresql"

_DATABASES: dict[str, str] = {}


def database_url(server: PostgresServer) -> str:
    """The session's database for PostgresStore cases (created, and its tables, once)."""
    url = _DATABASES.get(server.url(server.admin_db))
    if url is None:
        url = server.url(server.create_database("postgres_store"))
        _DATABASES[server.url(server.admin_db)] = url
        store = PostgresStore(url)
        store.check()
        store.close()
    return url


@contextmanager
def connection(url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection of its own to the store's database, in autocommit mode."""
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def empty(url: str) -> None:
    """Remove every record (and reset the ids), as a new database would have none."""
    with connection(url) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


def build(server: PostgresServer) -> StoreCase:
    """A fresh case: an empty store on the session's server."""
    url = database_url(server)
    empty(url)
    store = PostgresStore(url)

    def execute(sql: str) -> None:
        with connection(url) as conn:
            conn.execute(sql.encode())

    def set_kind(key: str, kind: str) -> None:
        with connection(url) as conn:
            conn.execute("UPDATE bounce_event SET kind = %s WHERE key = %s", (kind, key))

    return StoreCase(
        NAME,
        store,
        execute=execute,
        tables=TABLES,
        set_kind=set_kind,
        close=store.close,
        database=url,
    )
