"""Store URLs: ``memory://`` and SQLAlchemy's SQLite convention, opened by :func:`open_store`."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from .errors import ConfigurationError
from .memory_store import MemoryStore
from .store import Store


def open_store(url: str) -> Store:
    """Open a store from a URL.

    ``memory://``, or SQLAlchemy's SQLite convention: ``sqlite:///relative.sqlite3``
    (resolved against the current directory), ``sqlite:////absolute.sqlite3``.
    A SQLite URL may carry :class:`~bounce_middleware.sqlite_store.SQLiteStore`
    options as a query: ``?timeout=2`` (seconds to wait for a lock),
    ``?synchronous=FULL``, ``?mode=ro`` (read-only, for listing).
    """
    if url in ("memory:", "memory://"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite_store import SQLiteStore

        path, _, query = url[len("sqlite:///") :].partition("?")
        if not path:
            raise ConfigurationError("store URL sqlite:/// needs a file path after the third slash")
        options = _sqlite_options(query)
        return SQLiteStore(path, **options)
    raise ConfigurationError(
        f"unsupported store URL {url.split(':', 1)[0]!r}: use memory:// or sqlite:///path"
    )


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
