"""The embedded default store: one SQLite file shared by threads and processes.

:class:`SQLiteStore` needs nothing but the standard library's ``sqlite3``.
Several threads and several processes on one host (gunicorn workers, a
``bounce-middleware replay`` run beside the server) may use one file at once:

- The database runs in WAL mode, so readers never block the writer, and every
  connection waits up to ``timeout`` seconds for another's write lock.
- An event is recorded with ``INSERT ... ON CONFLICT (key) DO NOTHING`` inside
  a ``BEGIN IMMEDIATE`` transaction: the unique key, not a check-then-insert,
  decides which of two concurrent deliveries is first.
- A batch is one transaction: ``claim_many`` reads the batch's stored rows in
  one ``SELECT`` per 500 keys and writes with one ``executemany`` per kind of
  write, ``settle_many`` likewise (see :mod:`bounce_middleware.sqlite_claims`).
- A claim is a lease with an expiry and a random token. A worker that crashes
  while running handlers leaves a lease that a later delivery takes over once
  it has expired; a delivery only ever releases the lease it holds.
- Each thread has its own connection, opened on first use; a forked child
  (gunicorn ``--preload``) opens new ones and never touches its parent's.
  Each connection caches up to 16 MiB of pages, and the WAL is copied back
  into the database every 10,000 pages (a WAL file of about 40 MiB), not
  inside nearly every batch (see :mod:`bounce_middleware.sqlite_connections`).
- ``records(email=...)`` compares a folded copy of each address kept beside it
  (``email_key``, :func:`~bounce_middleware.model.fold_address` computed in
  Python): SQLite's own ``lower()`` folds ASCII only. Rejected requests are
  kept in a table of their own, never claimable.
- The tables are created on first use; those of an older version are
  upgraded in place (see :mod:`bounce_middleware.sqlite_schema`).
- ``prune`` reads which old finished events to delete without a lock, then
  deletes them in a short write transaction (see :mod:`bounce_middleware.sqlite_retention`).
- Every ``sqlite3`` error (locked past the timeout, read-only file, disk I/O
  error, missing directory, not a database) becomes
  :class:`~bounce_middleware.errors.StoreUnavailable`, which the middleware
  answers with 503 and ``Retry-After`` so the provider retries. The failed
  connection is closed and the next call opens a new one, so a repaired file
  is picked up without a restart.

Durability: ``synchronous=NORMAL`` (the default). In WAL mode a commit then
survives a crash of the application or of the process, but a power loss or an
operating system crash may roll back the last transactions committed before
it (never corrupting the file). For this store that can only forget recent
records and completions: an event answered 200 before the loss is not
redelivered, so nothing runs twice; one not yet answered is redelivered and
its handlers run again, which handlers must tolerate anyway (see
:mod:`bounce_middleware.store`). ``synchronous="FULL"`` syncs the WAL on every
commit, closing that window at the cost of one ``fsync`` per store write
(three or more per event).

WAL needs shared memory between the processes, so the file must be on a local
disk of the one host that runs them all, never on a network file system.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from . import sqlite_claims as claims
from . import sqlite_records as listing
from . import sqlite_retention as retention
from .errors import ConfigurationError
from .model import Bounce, BounceKind
from .retention import StoreCounts
from .sqlite_claims import timestamp
from .sqlite_connections import SQLiteDatabase
from .sqlite_schema import SCHEMA_VERSION
from .store import (
    Claim,
    Record,
    Settlement,
    rejection_key,
    rejections_can_match,
    storable,
)

__all__ = ["DEFAULT_TIMEOUT", "SCHEMA_VERSION", "SQLiteStore"]

#: Seconds a connection waits for another's write lock: well under a provider's
#: request timeout, and long enough to ride out any burst of short transactions.
DEFAULT_TIMEOUT = 5.0

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SQLiteStore:
    """A :class:`~bounce_middleware.store.Store` in one SQLite file.

    ``path`` is the database file. A relative path is resolved against the
    current directory when the store is created. The file and its tables are
    created on first use (and the tables of an older version upgraded in
    place); its directory is *not* created: a missing directory is a deployment
    mistake, reported as :class:`~bounce_middleware.errors.StoreUnavailable`
    naming it (and answered 503) until it exists. Creating the store touches no
    file; call :meth:`check` to fail at start-up instead.

    ``timeout`` is how long, in seconds, a write waits for another connection's
    lock before giving up with ``StoreUnavailable``. ``synchronous`` is SQLite's
    ``PRAGMA synchronous``: ``"NORMAL"`` (default) or ``"FULL"``; see the module
    documentation for what each risks on power loss. ``read_only=True`` opens
    an existing file for :meth:`records` only (every write raises
    ``StoreUnavailable``), as ``bounce-middleware list`` needs.

    The protocol methods keep the contract of :class:`~bounce_middleware.store.Store`;
    a claim of a new event is one ``INSERT``. Leases are compared with the wall
    clock (``time.time()``), shared by every process on the host.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        synchronous: str = "NORMAL",
        read_only: bool = False,
    ) -> None:
        text = os.fspath(path)
        if text in ("", ":memory:"):
            raise ConfigurationError(
                "SQLiteStore needs a file path (an in-memory database is private to one "
                "connection); use MemoryStore for a store in memory"
            )
        if timeout < 0:
            raise ConfigurationError("timeout must be zero or a positive number of seconds")
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}"
            )
        self.path = Path(text).absolute()
        self.timeout = float(timeout)
        self.synchronous = synchronous.upper()
        self.read_only = read_only
        self._db = SQLiteDatabase(
            self.path, timeout=self.timeout, synchronous=self.synchronous, read_only=read_only
        )
        self._transaction = self._db.transaction

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"SQLiteStore({str(self.path)!r}{mode})"

    # -- the Store protocol -------------------------------------------------

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        with self._transaction(write=True) as conn:
            # Read the clock once the write lock is ours: waiting for it takes time.
            return claims.claim(conn, bounce, now=time.time(), lease_seconds=lease_seconds)

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim."""
        with self._transaction(write=True) as conn:
            claims.complete(conn, claim, handler, now=time.time(), finished=finished)

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        with self._transaction(write=True) as conn:
            claims.release(conn, claim, finished_at=timestamp(time.time()) if finished else None)

    def claim_many(self, bounces: Sequence[Bounce], *, lease_seconds: float) -> list[Claim]:
        """:meth:`claim` each of ``bounces``, in one transaction; the claims in their order."""
        if not bounces:
            return []
        with self._transaction(write=True) as conn:
            return claims.claim_many(conn, bounces, now=time.time(), lease_seconds=lease_seconds)

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Record each settlement's completed handlers and end its claim, in one transaction."""
        if not settlements:
            return
        with self._transaction(write=True) as conn:
            claims.settle_many(conn, settlements, now=time.time())

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        rejected: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events (or rejected records), newest first, optionally filtered.

        ``email`` matches with Unicode case folding; ``unfinished`` keeps the
        events some handler has not completed (what ``replay`` re-runs), or the
        rejected records not yet resolved.
        """
        if rejected:
            # A rejected record has kind unknown and no address.
            if not rejections_can_match(kind, email):
                return []
            with self._transaction(write=False) as conn:
                return listing.rejected(conn, unfinished=unfinished, limit=limit)
        # One read transaction: the events and their completions from one snapshot.
        with self._transaction(write=False) as conn:
            return listing.events(conn, kind=kind, email=email, unfinished=unfinished, limit=limit)

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        """Keep an authenticated request refused with 400 (once per provider and body)."""
        key = rejection_key(provider, body)
        with self._transaction(write=True) as conn:
            conn.execute(
                """INSERT INTO bounce_rejected (key, provider, reason, received_at, body)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (key) DO NOTHING""",
                (key, storable(provider), storable(reason), timestamp(time.time()), body),
            )
        return key

    def resolve(self, key: str) -> None:
        """Mark a rejected record replayed."""
        with self._transaction(write=True) as conn:
            conn.execute(
                """UPDATE bounce_rejected SET resolved_at = COALESCE(resolved_at, ?)
                   WHERE key = ?""",
                (timestamp(time.time()), storable(key)),
            )

    # -- retention and counts (see bounce_middleware.retention) ---------------

    def prune(self, before: datetime, *, limit: int) -> int:
        """Delete at most ``limit`` finished events received before ``before``, oldest
        first, with their completions: a read, then one short write transaction."""
        return retention.prune(self._transaction, before, limit=limit)

    def counts(self, *, before: datetime | None = None) -> StoreCounts:
        """Count events, unfinished events and rejected requests (and, with ``before``,
        the finished events received before it), in one read transaction."""
        with self._transaction(write=False) as conn:
            return retention.counts(conn, before)

    # -- life cycle ---------------------------------------------------------

    def check(self) -> None:
        """Open the database now, creating (or upgrading) the file and tables if needed.

        Optional: every method does this on first use. Raises
        :class:`~bounce_middleware.errors.StoreUnavailable` saying what is wrong.
        """
        with self._transaction(write=False):
            pass

    def close(self) -> None:
        """Close every connection this store opened; a later call opens new ones.

        Call it when no other thread is using the store any more.
        """
        self._db.close()
