"""Store URLs: ``memory://``, SQLAlchemy's SQLite convention and PostgreSQL's, opened by
:func:`open_store`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigurationError
from .memory_store import MemoryStore
from .store import Store


def open_store(url: str, *, read_only: bool = False) -> Store:
    """Open a store from a URL; ``read_only=True`` opens an existing SQLite or PostgreSQL
    store for reading (creating, upgrading and writing nothing), whatever the URL says.

    ``memory://``, or SQLAlchemy's SQLite convention: ``sqlite:///relative.sqlite3``
    (resolved against the current directory), ``sqlite:////absolute.sqlite3``.
    A SQLite URL may carry :class:`~bounce_middleware.sqlite_store.SQLiteStore`
    options as a query: ``?timeout=2`` (seconds to wait for a lock),
    ``?synchronous=FULL``, ``?mode=ro`` (read-only, for listing).

    ``postgresql://user:password@host:5432/dbname`` (or ``postgres://``; the
    ``+psycopg`` of a SQLAlchemy URL is ignored) opens a
    :class:`~bounce_middleware.postgres_store.PostgresStore`. Its query may
    carry the store's options, ``?pool_size=10`` (connections per process),
    ``?timeout=5`` (seconds a statement or a free connection is waited for),
    ``?prepare=off`` (for PgBouncer before 1.21 in transaction mode), and any
    libpq parameter, passed on as it is (``sslmode=require``, ``connect_timeout=5``,
    ``options=-csearch_path%3Dbounces``).
    """
    if url in ("memory:", "memory://"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite_store import SQLiteStore

        path, _, query = url[len("sqlite:///") :].partition("?")
        if not path:
            raise ConfigurationError("store URL sqlite:/// needs a file path after the third slash")
        options = _sqlite_options(query)
        if read_only:
            options["read_only"] = True
        return SQLiteStore(path, **options)
    if _POSTGRES.match(url):
        from .postgres_connections import refuse_unencoded
        from .postgres_store import PostgresStore

        refuse_unencoded(url)  # before urlsplit reads a '?' of the password as the query
        dsn, options = _postgres_options(_POSTGRES.sub("postgresql://", url, count=1))
        return PostgresStore(dsn, read_only=read_only, **options)
    raise ConfigurationError(
        f"unsupported store URL {url.split(':', 1)[0]!r}: use memory://, sqlite:///path "
        "or postgresql://user@host/dbname"
    )


# postgresql://, postgres://, and SQLAlchemy's postgresql+psycopg:// (any driver named).
_POSTGRES = re.compile(r"^postgres(?:ql)?(?:\+[a-z0-9_]+)?://", re.IGNORECASE)
_ON, _OFF = ("1", "on", "true", "yes"), ("0", "off", "false", "no")


def _postgres_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without the store's own options, and those options (the rest is libpq's)."""
    parts = urlsplit(url)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError("store URL query is malformed") from None
    options: dict[str, Any] = {}
    libpq: list[tuple[str, str]] = []
    for name, value in pairs:
        if name == "pool_size":
            if not value.isdigit():
                raise ConfigurationError(
                    f"store URL option pool_size={value!r} is not a whole number"
                )
            options["pool_size"] = int(value)
        elif name == "timeout":
            try:
                options["timeout"] = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"store URL option timeout={value!r} is not a number of seconds"
                ) from None
        elif name == "prepare" and value.lower() in _ON + _OFF:
            options["prepare"] = value.lower() in _ON
        elif name == "prepare":
            raise ConfigurationError(f"store URL option prepare={value!r}: use on or off")
        else:
            libpq.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(libpq))), options


def _sqlite_options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"store URL query {query!r} is malformed") from None
    for name, value in pairs:
        if name == "timeout":
            try:
                options["timeout"] = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"store URL option timeout={value!r} is not a number of seconds"
                ) from None
        elif name == "synchronous":
            options["synchronous"] = value
        elif name == "mode" and value in ("ro", "rwc"):
            options["read_only"] = value == "ro"
        else:
            raise ConfigurationError(
                f"unknown store URL option {name}={value!r}; known: timeout=SECONDS, "
                "synchronous=NORMAL|FULL, mode=ro"
            )
    return options
