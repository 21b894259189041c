"""The connections of :class:`~bounce_middleware.postgres_store.PostgresStore`: a small pool.

:class:`ConnectionPool` lends each call a connection of its own and takes it
back afterwards, so that any number of threads share at most ``size``
connections per process: a gunicorn worker's thread pool and a server that
starts a thread per request alike. Connections are opened on first need,
kept while they work, and in autocommit mode: every store operation is a
single statement, atomic by itself, with no transaction left open between
calls.

- A connection whose socket has something to read while it lies idle has
  heard from the server unasked, which only happens when its session is
  being ended (a restart, ``pg_terminate_backend``, a failover): it is
  dropped and a new one opened, so a restarted server costs no failed request.
- A connection that was lost, or interrupted mid-statement, is closed and
  never lent again; one whose statement the server refused is kept.
- A forked child (a gunicorn worker started with ``--preload``) never uses or
  closes a connection its parent opened: closing it would end the parent's
  session too. It opens its own.
"""

from __future__ import annotations

import os
import re
import select
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .errors import ConfigurationError, StoreUnavailable

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

    Conn = Connection[TupleRow]

__all__ = ["ConnectionPool", "parse_dsn", "refuse_unencoded"]

# Connections inherited over fork(): never used nor closed in the child (closing one
# would end the parent's session), only kept from the collector, whose clean-up of an
# unclosed connection warns.
_INHERITED: list[object] = []


class _Entry:
    """A connection and the process that opened it."""

    __slots__ = ("conn", "pid")

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.pid = os.getpid()


def _close(entry: _Entry) -> None:
    if entry.pid != os.getpid():
        _INHERITED.append(entry.conn)
        return
    with suppress(Exception):
        entry.conn.close()


def _close_all(entries: list[_Entry]) -> None:
    while entries:
        _close(entries.pop())


class _State:
    """What a fork replaces: the idle connections, the lock, and the free slots."""

    __slots__ = ("idle", "lock", "slots")

    def __init__(self, size: int) -> None:
        self.idle: list[_Entry] = []
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(size)


class ConnectionPool:
    """At most ``size`` connections made by ``connect()``, lent one per call.

    A call waits up to ``timeout`` seconds for a free connection, then raises
    :class:`StoreUnavailable` (answered 503: the provider retries later).
    """

    def __init__(
        self,
        connect: Callable[[], Conn],
        *,
        size: int,
        timeout: float,
        where: str,
    ) -> None:
        self._connect = connect
        self.size = size
        self.timeout = timeout
        self._where = where
        self._state = _State(size)
        # Bumped by close(): a connection lent before is closed when it comes back.
        self._generation = 0
        # Closes the idle connections when the store is collected or the program ends
        # (never those of another process: _close checks).
        self._finalizer = weakref.finalize(self, _close_all, self._state.idle)
        _POOLS.add(self)

    def __len__(self) -> int:
        """How many idle connections the pool holds (for tests and diagnostics)."""
        return len(self._state.idle)

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        """A connection for this call alone; given back (or closed) afterwards."""
        state = self._state
        if not state.slots.acquire(timeout=self.timeout):
            raise StoreUnavailable(
                f"{self._where}: all {self.size} connections of this process stayed busy "
                f"for {self.timeout:g} s (pool_size)"
            )
        try:
            generation = self._generation
            entry = self._take(state)
            healthy = False
            try:
                yield entry.conn
                healthy = True
            except Exception:
                # A statement the server refused (a timeout, a missing table) leaves the
                # connection as good as before; a lost one, or an interruption, does not.
                healthy = not entry.conn.broken
                raise
            finally:
                self._give_back(state, entry, healthy and generation == self._generation)
        finally:
            state.slots.release()

    def _take(self, state: _State) -> _Entry:
        while True:
            with state.lock:
                entry = state.idle.pop() if state.idle else None
            if entry is None:
                return _Entry(self._connect())
            if _idle_and_quiet(entry.conn):
                return entry
            _close(entry)

    def _give_back(self, state: _State, entry: _Entry, healthy: bool) -> None:
        from psycopg.pq import TransactionStatus

        conn = entry.conn
        if (
            healthy
            and entry.pid == os.getpid()
            and state is self._state
            and not conn.closed
            and conn.info.transaction_status == TransactionStatus.IDLE
        ):
            with state.lock:
                state.idle.append(entry)
            return
        _close(entry)

    def close(self) -> None:
        """Close the idle connections; those lent now are closed when given back."""
        self._generation += 1
        state = self._state
        with state.lock:
            entries = list(state.idle)
            state.idle.clear()
        _close_all(entries)

    def _after_fork(self) -> None:
        """In a forked child, before any other thread runs: forget the parent's connections."""
        _INHERITED.extend(entry.conn for entry in self._state.idle)
        # The parent's lock and slots may have been held by threads that do not exist here.
        self._state.idle.clear()
        self._state = _State(self.size)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_all, self._state.idle)


def _idle_and_quiet(conn: Conn) -> bool:
    """Whether an idle connection may be lent: open, and nothing arrived on it unasked.

    A server ending a session (shutdown, restart, a terminated backend) says so on
    the socket, or closes it: either makes the socket readable. Checked without a
    round trip.
    """
    if conn.closed or conn.broken:
        return False
    try:
        fd = conn.fileno()
        if _poll is None:  # Windows: select() takes sockets of any number there
            return not select.select([fd], [], [], 0)[0]
        poller = _poll()
        poller.register(fd, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


# poll(), unlike select(), takes descriptors above FD_SETSIZE (1,024) on Unix.
_poll = getattr(select, "poll", None)


# Every live pool, so that a forked child resets them all before its first thread can use one.
_POOLS: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


_URL_PREFIXES = ("postgresql://", "postgres://")
# Any spelling open_store() takes: postgres://, POSTGRESQL://, postgresql+psycopg://.
_SCHEME = re.compile(r"postgres(?:ql)?(?:\+[a-z0-9_]+)?://", re.IGNORECASE)


def refuse_unencoded(url: str) -> None:
    """Refuse a URL whose user name or password holds a raw ``@``, ``/`` or ``?``.

    libpq (and ``urlsplit``) would end the password at that character and read the
    rest as the host, the port, the database or the query, which the store's repr,
    its errors and its 503 messages show. Where the ``@`` meant for the host is cannot
    be known, so a URL holds one raw ``@`` at most, with no ``/`` or ``?`` before it.
    The message never quotes the URL.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return
    rest = url[scheme.end() :]
    at = rest.find("@")
    if at != -1 and ("/" in rest[:at] or "?" in rest[:at] or "@" in rest[at + 1 :]):
        raise ConfigurationError(
            "PostgresStore: the URL has an '@', '/' or '?' where libpq would cut the user "
            "name or password short: percent-encode them in the user name and password "
            "(@ as %40, / as %2F, ? as %3F), and an '@' anywhere else in the URL"
        )


def parse_dsn(dsn: str) -> dict[str, Any]:
    """The libpq parameters of ``dsn``; :class:`ConfigurationError` naming what is wrong,
    never quoting it (it may hold a password)."""
    from psycopg import Error, conninfo, pq

    refuse_unencoded(dsn)
    try:
        return conninfo.conninfo_to_dict(dsn)
    except Error:
        pass
    if dsn.startswith(_URL_PREFIXES):
        known = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
        unknown = sorted({name for name, _ in parse_qsl(urlsplit(dsn).query)} - known)
        if unknown:
            hint = "a URL's query holds libpq parameters, such as sslmode or connect_timeout"
            if set(unknown) & {"pool_size", "timeout", "prepare"}:
                hint = "pool_size, timeout and prepare are open_store()'s; give PostgresStore "
                hint += "them as arguments"
            raise ConfigurationError(
                f"PostgresStore: unknown connection option(s) {', '.join(unknown)} in the URL "
                f"({hint})"
            ) from None
    raise ConfigurationError(
        "PostgresStore: the connection string is neither a postgresql:// URL nor libpq "
        "key=value pairs that libpq accepts"
    ) from None
