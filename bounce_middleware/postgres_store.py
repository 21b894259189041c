"""A store on a PostgreSQL server, shared by every process of every host: :class:`PostgresStore`.

:class:`PostgresStore` needs ``psycopg`` 3 (``pip install
"bounce-middleware[postgres]"``) and PostgreSQL 12 or later. Any number of
application servers on any number of hosts may share one database:

- Every operation is one SQL statement in autocommit mode (see
  :mod:`bounce_middleware.postgres_claims`): a claim is an ``INSERT ... ON
  CONFLICT (key) DO UPDATE ... WHERE`` the lease is free or expired, so the
  unique key, not a lock of the table, decides which delivery runs the
  handlers; a batch of a thousand events is one statement to claim and one to
  settle. No ``SERIALIZABLE`` retries: the default ``READ COMMITTED`` is right.
- Leases are compared with the database server's clock: the hosts' clocks
  need not agree.
- Each process keeps a small pool of connections (``pool_size``), lent one
  per call and safe to share between threads; a forked child never touches its
  parent's (see :mod:`bounce_middleware.postgres_connections`).
- The tables are created on first use (see :mod:`bounce_middleware.postgres_schema`).
- Every ``psycopg`` error (refused or dropped connection, a statement past
  ``timeout``, missing privileges) becomes
  :class:`~bounce_middleware.errors.StoreUnavailable`, answered 503 with
  ``Retry-After`` so the provider retries; its message names the error's class
  and, for connection errors only, the server's first line: never a
  statement's parameters. A restarted server is picked up without a restart.

Durability is the server's: with its default ``synchronous_commit = on`` an
event answered 200 is on the server's disk (and on its synchronous replicas).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from . import postgres_claims as claims
from . import postgres_records as listing
from . import postgres_retention as retention
from .errors import ConfigurationError, ImproperlyInstalled, StoreUnavailable
from .model import Bounce, BounceKind
from .postgres_connections import ConnectionPool, parse_dsn
from .postgres_schema import SCHEMA_VERSION, TABLES, ensure_schema, require_schema
from .retention import StoreCounts
from .store import (
    Claim,
    Record,
    Settlement,
    rejection_key,
    rejections_can_match,
    storable,
    unavailable,
)
from .text import loggable

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

__all__ = ["DEFAULT_POOL_SIZE", "DEFAULT_TIMEOUT", "SCHEMA_VERSION", "TABLES", "PostgresStore"]

T = TypeVar("T")

#: Connections per process, at most: one per thread using the store at once.
DEFAULT_POOL_SIZE = 10
#: Seconds a statement may run (waiting for another delivery's row lock included), and a
#: thread may wait for a free connection, before the delivery is answered 503.
DEFAULT_TIMEOUT = 5.0
#: libpq parameters the store sets unless the URL does.
LIBPQ_DEFAULTS = {"connect_timeout": "5", "application_name": "bounce-middleware"}


class PostgresStore:
    """A :class:`~bounce_middleware.store.Store` in a PostgreSQL database.

    ``dsn`` is a libpq connection string, as a URL
    (``postgresql://user:password@host:5432/bounces?sslmode=require``; any
    libpq parameter may be given in its query) or as ``key=value`` pairs. In a URL,
    an ``@``, ``/`` or ``?`` of the user name or password must be percent-encoded
    (``%40``, ``%2F``, ``%3F``): libpq would read the rest as the host or the
    database, so such a URL is refused with :class:`ConfigurationError`.
    Creating the store opens no connection; call :meth:`check` to fail at
    start-up instead of at the first webhook.

    ``pool_size`` is how many connections each process keeps at most; a thread
    that finds them all busy waits up to ``timeout`` seconds. ``timeout`` is
    also each statement's ``statement_timeout``: a claim waiting longer for a
    row another delivery holds is answered 503. ``prepare=False`` turns off
    psycopg's prepared statements, which a PgBouncer before 1.21 in transaction
    pooling mode cannot keep. ``read_only=True`` (for listing and counting) creates
    no tables, refusing a database without them, and runs every statement in a
    read-only transaction: the server refuses any write.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        prepare: bool = True,
        read_only: bool = False,
    ) -> None:
        try:
            import psycopg
        except ImportError:
            raise ImproperlyInstalled("postgres", "psycopg") from None
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigurationError("pool_size must be a whole number of connections, 1 or more")
        if not timeout > 0 or math.isinf(timeout):
            raise ConfigurationError("timeout must be a positive number of seconds")
        params = parse_dsn(dsn)
        for name, value in LIBPQ_DEFAULTS.items():
            params.setdefault(name, value)
        self._conninfo = psycopg.conninfo.make_conninfo("", **params)
        self.pool_size = pool_size
        self.timeout = float(timeout)
        self.prepare = prepare
        self.read_only = read_only
        shown = {k: v for k, v in params.items() if k in ("host", "port", "dbname", "user")}
        self._shown = psycopg.conninfo.make_conninfo("", **shown)
        place = f"{params.get('host', '')}:{params.get('port', '')}/{params.get('dbname', '')}"
        self._where = f"PostgreSQL bounce store {place}"
        self._errors = psycopg.Error
        self._pool = ConnectionPool(
            self._connect, size=pool_size, timeout=self.timeout, where=self._where
        )

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"PostgresStore({self._shown!r}{mode})"

    def _connect(self) -> Connection[TupleRow]:
        import psycopg

        conn = psycopg.connect(
            self._conninfo, autocommit=True, prepare_threshold=5 if self.prepare else None
        )
        try:
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (str(math.ceil(self.timeout * 1000)),),
            )
            if self.read_only:
                conn.execute("SELECT set_config('default_transaction_read_only', 'on', false)")
                require_schema(conn, self._where)
            else:
                ensure_schema(conn, self._where)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, what: str, work: Callable[[Connection[TupleRow]], T]) -> T:
        try:
            with self._pool.connection() as conn:
                return work(conn)
        except self._errors as exc:
            # from None: a chained driver error may quote the statement's parameters.
            raise _unavailable(f"{self._where}: {what}", exc) from None

    # -- the Store protocol -------------------------------------------------

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        return self._run("claim", lambda c: claims.claim(c, bounce, lease_seconds=lease_seconds))

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim."""
        self._run("complete", lambda c: claims.complete(c, claim, handler, finished=finished))

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        self._run("release", lambda c: claims.release(c, claim, finished=finished))

    def claim_many(self, bounces: Sequence[Bounce], *, lease_seconds: float) -> list[Claim]:
        """:meth:`claim` each of ``bounces`` in one statement; the claims in their order."""
        if not bounces:
            return []
        return self._run(
            "claim_many", lambda c: claims.claim_many(c, bounces, lease_seconds=lease_seconds)
        )

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Record each settlement's completed handlers and end its claim, in one statement."""
        if settlements:
            self._run("settle_many", lambda c: claims.settle_many(c, settlements))

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
            if not rejections_can_match(kind, email):
                return []
            return self._run("records", lambda c: listing.rejected(c, unfinished, limit))
        return self._run(
            "records", lambda c: listing.events(c, kind, email, unfinished=unfinished, limit=limit)
        )

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        """Keep an authenticated request refused with 400 (once per provider and body)."""
        key = rejection_key(provider, body)
        values = (key, storable(provider), storable(reason), body)
        self._run(
            "reject",
            lambda c: c.execute(
                """INSERT INTO bounce_rejected (key, provider, reason, received_at, body)
                   VALUES (%s, %s, %s, now(), %s) ON CONFLICT (key) DO NOTHING""",
                values,
            ),
        )
        return key

    def resolve(self, key: str) -> None:
        """Mark a rejected record replayed."""
        self._run(
            "resolve",
            lambda c: c.execute(
                """UPDATE bounce_rejected SET resolved_at = coalesce(resolved_at, now())
                   WHERE key = %s""",
                (storable(key),),
            ),
        )

    # -- retention and counts (see bounce_middleware.retention) ---------------

    def prune(self, before: datetime, *, limit: int) -> int:
        """Delete at most ``limit`` finished events received before ``before``, oldest
        first, with their completions (see :mod:`bounce_middleware.postgres_retention`)."""
        return self._run("prune", lambda c: retention.prune(c, before, limit=limit))

    def counts(self, *, before: datetime | None = None) -> StoreCounts:
        """Count events, unfinished events and rejected requests (and, with ``before``,
        the finished events received before it), in one statement."""
        return self._run("counts", lambda c: retention.counts(c, before, self.timeout))

    # -- life cycle ---------------------------------------------------------

    def check(self) -> None:
        """Connect now, creating the tables if needed.

        Optional: every method does this on first use. Raises
        :class:`~bounce_middleware.errors.StoreUnavailable` saying what is wrong.
        """
        self._run("check", lambda c: None)

    def close(self) -> None:
        """Close this process's idle connections; a later call opens new ones."""
        self._pool.close()


#: The grants the store's role needs after the first start (see postgres_schema).
GRANTS = (
    "SELECT, INSERT, UPDATE and DELETE on the tables bounce_event, bounce_completion, "
    "bounce_rejected and bounce_schema, and USAGE on the sequence bounce_event_id_seq "
    "(a batch claim draws its ids from it)"
)


def _unavailable(where: str, exc: Exception) -> StoreUnavailable:
    """:func:`unavailable`, and for a missing privilege the server's line (it names the
    table, sequence or schema, never a value) and the grants the store needs."""
    found = unavailable(where, exc)
    if type(exc).__name__ == "InsufficientPrivilege":
        denied = getattr(getattr(exc, "diag", None), "message_primary", None) or ""
        shown = f" ({loggable(denied)})" if denied else ""
        return StoreUnavailable(f"{found}{shown}: the role needs {GRANTS}")
    return found
