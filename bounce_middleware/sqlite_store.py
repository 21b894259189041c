"""The embedded default store: one SQLite file shared by threads and processes.

:class:`SQLiteStore` needs nothing but the standard library's ``sqlite3``.
Several threads and several processes on one host (gunicorn workers, a
``bounce-middleware replay`` run beside the server) may use one file at once:

- The database runs in WAL mode, so readers never block the writer, and every
  connection waits up to ``timeout`` seconds for another's write lock.
- An event is recorded with ``INSERT ... ON CONFLICT (key) DO NOTHING`` inside
  a ``BEGIN IMMEDIATE`` transaction: the unique key, not a check-then-insert,
  decides which of two concurrent deliveries is first.
- A claim is a lease with an expiry and a random token. A worker that crashes
  while running handlers leaves a lease that a later delivery takes over once
  it has expired; a delivery only ever releases the lease it holds.
- Each thread has its own connection, opened on first use; a forked child
  (gunicorn ``--preload``) opens new ones and never touches its parent's.
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
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from .errors import ConfigurationError, StoreUnavailable
from .model import Bounce, BounceKind
from .store import Claim, ClaimState, Record, new_token

__all__ = ["DEFAULT_TIMEOUT", "SCHEMA_VERSION", "SQLiteStore"]

#: Seconds a connection waits for another's write lock: well under a provider's
#: request timeout, and long enough to ride out any burst of short transactions.
DEFAULT_TIMEOUT = 5.0

#: Version of the tables below, kept in ``bounce_schema`` (not ``PRAGMA
#: user_version``, which belongs to an application sharing the file).
SCHEMA_VERSION = 1

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bounce_event (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        provider TEXT NOT NULL,
        email TEXT NOT NULL,
        email_lower TEXT NOT NULL,
        kind TEXT NOT NULL,
        type TEXT NOT NULL,
        received_at TEXT NOT NULL,
        finished_at TEXT,
        attempts INTEGER NOT NULL,
        body BLOB NOT NULL,
        lease_token TEXT,
        lease_expires REAL
    )""",
    # No index on email or kind: each index is another page written to the WAL on
    # every webhook (claim 60 -> 38 us measured), while filtering by them is an
    # occasional `bounce-middleware list`, for which a scan of the table is fine.
    """CREATE TABLE IF NOT EXISTS bounce_completion (
        key TEXT NOT NULL REFERENCES bounce_event (key) ON DELETE CASCADE,
        handler TEXT NOT NULL,
        completed_at TEXT NOT NULL,
        PRIMARY KEY (key, handler)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS bounce_schema (version INTEGER NOT NULL)",
)

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


def _forget(
    registry: dict[int, tuple[sqlite3.Connection, weakref.finalize[..., _Holder]]],
    lock: threading.RLock,
    ident: int,
    conn: sqlite3.Connection,
) -> None:
    with lock:
        registry.pop(ident, None)
    with suppress(sqlite3.Error):
        conn.close()


class SQLiteStore:
    """A :class:`~bounce_middleware.store.Store` in one SQLite file.

    ``path`` is the database file. A relative path is resolved against the
    current directory when the store is created. The file and its tables are
    created on first use; its directory is *not* created: a missing directory
    is a deployment mistake, reported as
    :class:`~bounce_middleware.errors.StoreUnavailable` naming it (and answered
    503) until it exists. Creating the store touches no file; call
    :meth:`check` to fail at start-up instead.

    ``timeout`` is how long, in seconds, a write waits for another connection's
    lock before giving up with ``StoreUnavailable``. ``synchronous`` is SQLite's
    ``PRAGMA synchronous``: ``"NORMAL"`` (default) or ``"FULL"``; see the module
    documentation for what each risks on power loss. ``read_only=True`` opens
    an existing file for :meth:`records` only (every write raises
    ``StoreUnavailable``), as ``bounce-middleware list`` needs.

    Semantics of the protocol methods:

    - :meth:`claim` records the event (key, provider, address, kind, type,
      raw body) the first time its key is seen, atomically with taking a lease
      of ``lease_seconds``. It answers ``NEW`` for a first delivery, ``DONE``
      once :meth:`release` marked it finished, ``BUSY`` while another delivery
      holds an unexpired lease, and ``RESUMED`` (taking a new lease) otherwise;
      ``completed`` lists the handler names already recorded.
    - :meth:`complete` records one handler's success; recording it twice is harmless.
    - :meth:`release` marks the event finished when ``finished`` is true, and
      drops the lease if, and only if, the claim's token still holds it.
    - :meth:`records` lists events newest first (by first receipt).

    Leases are compared with the wall clock (``time.time()``), shared by every
    process on the host.
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
        self._uri = self.path.as_uri() + ("?mode=ro" if read_only else "?mode=rwc")
        # Reentrant: a finalizer may run, and take it, in a thread that already holds it.
        self._lock = threading.RLock()
        self._local = threading.local()
        self._generation = 0
        self._open: dict[int, tuple[sqlite3.Connection, weakref.finalize[..., _Holder]]] = {}
        _STORES.add(self)

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"SQLiteStore({str(self.path)!r}{mode})"

    # -- the Store protocol -------------------------------------------------

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        key = bounce.key
        token = new_token()
        with self._transaction(write=True) as conn:
            # Read the clock once the write lock is ours: waiting for it takes time.
            now = time.time()
            inserted = conn.execute(
                """INSERT INTO bounce_event (key, provider, email, email_lower, kind, type,
                       received_at, attempts, body, lease_token, lease_expires)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
                   ON CONFLICT (key) DO NOTHING""",
                (
                    key,
                    bounce.provider,
                    bounce.email,
                    bounce.email.lower(),
                    bounce.kind.value,
                    bounce.type,
                    _timestamp(now),
                    bounce.body,
                    token,
                    now + lease_seconds,
                ),
            ).rowcount
            if inserted:
                return Claim(key, ClaimState.NEW, frozenset(), token)
            finished_at, lease_expires = conn.execute(
                "SELECT finished_at, lease_expires FROM bounce_event WHERE key = ?", (key,)
            ).fetchone()
            completed = frozenset(
                name
                for (name,) in conn.execute(
                    "SELECT handler FROM bounce_completion WHERE key = ?", (key,)
                )
            )
            if finished_at is not None:
                return Claim(key, ClaimState.DONE, completed)
            if lease_expires is not None and lease_expires > now:
                return Claim(key, ClaimState.BUSY, completed)
            conn.execute(
                """UPDATE bounce_event
                   SET lease_token = ?, lease_expires = ?, attempts = attempts + 1
                   WHERE key = ?""",
                (token, now + lease_seconds, key),
            )
            return Claim(key, ClaimState.RESUMED, completed, token)

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim."""
        with self._transaction(write=True) as conn:
            now = time.time()
            conn.execute(
                """INSERT INTO bounce_completion (key, handler, completed_at) VALUES (?, ?, ?)
                   ON CONFLICT (key, handler) DO NOTHING""",
                (claim.key, handler, _timestamp(now)),
            )
            if finished:
                _release(conn, claim, finished_at=_timestamp(now))

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        with self._transaction(write=True) as conn:
            _release(conn, claim, finished_at=_timestamp(time.time()) if finished else None)

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events, newest first, optionally filtered.

        ``email`` matches case-insensitively; ``unfinished`` keeps the events
        some handler has not completed (what ``replay`` re-runs).
        """
        clauses: list[str] = []
        params: list[object] = []
        if kind is not None:
            clauses.append("kind = ?")
            params.append(BounceKind(kind).value)
        if email is not None:
            clauses.append("email_lower = ?")
            params.append(email.lower())
        if unfinished:
            clauses.append("finished_at IS NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        select = f"FROM bounce_event {where} ORDER BY id DESC"
        if limit is not None:
            select += " LIMIT ?"
            params.append(max(limit, 0))
        # One read transaction: both queries see the same snapshot.
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT key, provider, email, kind, type, received_at, finished_at, attempts, "
                f"body {select}",
                params,
            ).fetchall()
            completed: dict[str, set[str]] = {}
            for key, name in conn.execute(
                f"SELECT key, handler FROM bounce_completion WHERE key IN (SELECT key {select})",
                params,
            ):
                completed.setdefault(key, set()).add(name)
        return [
            Record(
                key=key,
                provider=provider,
                email=address,
                kind=_kind(kind_value),
                type=type_,
                received_at=datetime.fromisoformat(received_at),
                finished=finished_at is not None,
                completed=frozenset(completed.get(key, ())),
                body=bytes(body),
                attempts=attempts,
            )
            for (
                key,
                provider,
                address,
                kind_value,
                type_,
                received_at,
                finished_at,
                attempts,
                body,
            ) in rows
        ]

    # -- life cycle ---------------------------------------------------------

    def check(self) -> None:
        """Open the database now, creating the file and tables if needed.

        Optional: every method does this on first use. Raises
        :class:`~bounce_middleware.errors.StoreUnavailable` saying what is wrong.
        """
        with self._transaction(write=False):
            pass

    def close(self) -> None:
        """Close every connection this store opened; a later call opens new ones.

        Call it when no other thread is using the store any more.
        """
        with self._lock:
            self._generation += 1
            entries = list(self._open.values())
        for _conn, finalizer in entries:
            finalizer()

    # -- connections --------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._connection()
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
            self._discard()
            raise StoreUnavailable(self._describe(exc)) from exc

    def _connection(self) -> sqlite3.Connection:
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
            if not self.read_only:
                self._use_wal(conn)
            self._ensure_schema(conn)
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

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        # Read first, so that only the very first connection to a new file takes the write lock.
        if self._schema_version(conn) == SCHEMA_VERSION:
            return
        if self.read_only:
            raise sqlite3.OperationalError("the file holds no bounce-middleware tables")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Several processes may start at once: the write lock orders them, and
            # whoever comes second finds the tables there.
            if self._schema_version(conn) == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO bounce_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bounce_schema'"
        ).fetchone()
        row = conn.execute("SELECT max(version) FROM bounce_schema").fetchone() if exists else None
        version = int(row[0]) if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"SQLite bounce store {self.path}: its schema version {version} is newer "
                f"than this bounce-middleware understands ({SCHEMA_VERSION}); upgrade it"
            )
        return version

    def _discard(self) -> None:
        """Close this thread's connection after an error, so the next call starts afresh."""
        holder: _Holder | None = getattr(self._local, "holder", None)
        self._local.holder = None
        if holder is not None and holder.finalizer is not None:
            holder.finalizer()

    def _after_fork(self) -> None:
        """In a forked child, before any other thread runs: forget the parent's connections."""
        for conn, finalizer in self._open.values():
            finalizer.detach()
            _INHERITED.append(conn)
        # The parent's lock may have been held by a thread that does not exist here.
        self._lock = threading.RLock()
        self._open = {}
        self._local = threading.local()

    def _describe(self, exc: sqlite3.Error) -> str:
        message = f"SQLite bounce store {self.path}: {exc}"
        # os.path.isdir, unlike Path.is_dir, is False rather than raising on EACCES.
        if not os.path.isdir(self.path.parent):
            message += f" (directory {self.path.parent} does not exist; it is not created)"
        elif os.path.isdir(self.path):
            message += " (the path is a directory)"
        return message


# Every live store, so that a forked child (a gunicorn worker started with
# --preload) resets them all before its first thread can use one.
_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for store in list(_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _release(conn: sqlite3.Connection, claim: Claim, *, finished_at: str | None) -> None:
    # SET expressions all see the row as it was, so the token test holds for both.
    conn.execute(
        """UPDATE bounce_event
           SET finished_at = COALESCE(finished_at, ?),
               lease_token = CASE WHEN lease_token = ? THEN NULL ELSE lease_token END,
               lease_expires = CASE WHEN lease_token = ? THEN NULL ELSE lease_expires END
           WHERE key = ?""",
        (finished_at, claim.token, claim.token, claim.key),
    )


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def _kind(value: str) -> BounceKind:
    try:
        return BounceKind(value)
    except ValueError:
        # Written by a newer version that knows more kinds.
        return BounceKind.UNKNOWN
