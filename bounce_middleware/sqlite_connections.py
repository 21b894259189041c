"""The SQLite file under :class:`~bounce_middleware.sqlite_store.SQLiteStore`.

:class:`SQLiteDatabase` opens connections (WAL, the store's tables created or
upgraded), runs transactions, and turns every ``sqlite3`` error into
:class:`~bounce_middleware.errors.StoreUnavailable`. :class:`ThreadConnections`
keeps one connection per thread: each thread opens its own on first use (a
``sqlite3`` connection must not be shared by two threads at once), it is closed
when the thread ends (Django's ``runserver`` starts one thread per request),
and a forked child (a gunicorn worker started with ``--preload``) opens new
connections and never touches its parent's.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import StoreUnavailable
from .sqlite_schema import ensure_schema
from .store import unavailable

__all__ = ["CACHE_KIB", "WAL_AUTOCHECKPOINT", "SQLiteDatabase", "ThreadConnections"]

#: Page cache of each connection, in KiB (SQLite's default: 2,000). A 1,000-event
#: batch dirties about 1,000 pages (4 MiB): with the default cache SQLite spills them
#: to the WAL before the commit and reads back the key index every batch. Memory is
#: taken only as pages are read, up to this much per connection (one per thread).
CACHE_KIB = 16_384

#: WAL pages after which a commit copies the WAL back into the database (SQLite's
#: default: 1,000, about 4 MiB). A 1,000-event batch writes about 1,000 pages, so the
#: default checkpointed inside nearly every batch's request, writing back the same
#: index pages again and again, with two fsyncs each time. At 10,000 (a WAL file of
#: about 40 MiB, which keeps that size on disk) a page written by ten batches in a
#: row is copied once. Durability is unchanged: ``synchronous`` decides that.
WAL_AUTOCHECKPOINT = 10_000

# Connections inherited over fork(): never used nor closed in the child (closing
# one could checkpoint or delete the parent's WAL), only kept from the collector.
_INHERITED: list[sqlite3.Connection] = []


class _Holder:
    """One thread's connection; when the thread ends, the holder is collected and closes it."""

    __slots__ = ("__weakref__", "conn", "finalizer", "generation")

    def __init__(self, conn: sqlite3.Connection, generation: int) -> None:
        self.conn = conn
        self.generation = generation
        self.finalizer: weakref.finalize[..., _Holder] | None = None


_Registry = dict[int, tuple[sqlite3.Connection, "weakref.finalize[..., _Holder]"]]


def _forget(
    registry: _Registry, lock: threading.RLock, ident: int, conn: sqlite3.Connection
) -> None:
    with lock:
        registry.pop(ident, None)
    with suppress(sqlite3.Error):
        conn.close()


class ThreadConnections:
    """The connections ``connect()`` opens, one per thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        # Reentrant: a finalizer may run, and take it, in a thread that already holds it.
        self._lock = threading.RLock()
        self._local = threading.local()
        self._generation = 0
        self._open: _Registry = {}
        _POOLS.add(self)

    def __len__(self) -> int:
        """How many connections are open (for tests and diagnostics)."""
        return len(self._open)

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened now if it has none (or only a closed one)."""
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is not None and holder.generation == self._generation:
            return holder.conn
        conn = self._connect()
        holder = _Holder(conn, self._generation)
        with self._lock:
            finalizer = weakref.finalize(holder, _forget, self._open, self._lock, id(holder), conn)
            holder.finalizer = finalizer
            self._open[id(holder)] = (conn, finalizer)
        self._local.holder = holder
        return conn

    def discard(self) -> None:
        """Close this thread's connection (after an error), so the next call starts afresh."""
        holder: _Holder | None = getattr(self._local, "holder", None)
        self._local.holder = None
        if holder is not None and holder.finalizer is not None:
            holder.finalizer()

    def close(self) -> None:
        """Close every connection; each thread opens a new one on its next call."""
        with self._lock:
            self._generation += 1
            entries = list(self._open.values())
        for _conn, finalizer in entries:
            finalizer()

    def _after_fork(self) -> None:
        """In a forked child, before any other thread runs: forget the parent's connections."""
        for conn, finalizer in self._open.values():
            finalizer.detach()
            _INHERITED.append(conn)
        # The parent's lock may have been held by a thread that does not exist here.
        self._lock = threading.RLock()
        self._open = {}
        self._local = threading.local()


# Every live pool, so that a forked child resets them all before its first thread can use one.
_POOLS: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class SQLiteDatabase:
    """One SQLite file, opened per thread, in WAL mode, with the store's tables."""

    def __init__(self, path: Path, *, timeout: float, synchronous: str, read_only: bool) -> None:
        self.path = path
        self.timeout = timeout
        self.synchronous = synchronous
        self.read_only = read_only
        self._uri = path.as_uri() + ("?mode=ro" if read_only else "?mode=rwc")
        self.connections = ThreadConnections(self._connect)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """This thread's connection in a transaction, committed if the block succeeds.

        Any ``sqlite3`` error becomes :class:`StoreUnavailable`, and the connection
        is closed so that the next call opens a new one (a repaired file is picked
        up without a restart).
        """
        try:
            conn = self.connections.get()
            # IMMEDIATE takes the write lock up front (waiting up to the timeout), so a
            # transaction never fails half-way when upgrading from reader to writer.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.connections.discard()
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Close every connection; a later transaction opens new ones."""
        self.connections.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._uri,
            uri=True,
            timeout=self.timeout,
            # Transactions are begun and ended explicitly.
            isolation_level=None,
            # Used by one thread only; close() may close it from another.
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            if not self.read_only:
                self._use_wal(conn)
            ensure_schema(conn, self.path, read_only=self.read_only)
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL (persistent: later connections find it so)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                break
            except sqlite3.OperationalError as exc:
                # Leaving rollback mode needs the file to itself, and SQLite answers
                # "locked" at once, without its busy handler, when processes start together.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode is {mode})")

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        message = str(unavailable(f"SQLite bounce store {self.path}", exc))
        # os.path.isdir, unlike Path.is_dir, is False rather than raising on EACCES.
        if not os.path.isdir(self.path.parent):
            message += f" (directory {self.path.parent} does not exist; it is not created)"
        elif os.path.isdir(self.path):
            message += " (the path is a directory)"
        return StoreUnavailable(message)
