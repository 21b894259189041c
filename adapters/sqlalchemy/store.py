"""SQLAlchemyStore: the store protocol in the application's own database."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.retention import StoreCounts
from bounce_middleware.store import (
    Claim,
    ClaimState,
    Record,
    Settlement,
    new_token,
    rejection_key,
    storable,
    unavailable,
)

from . import pruning
from .batch import claim_many, event_row, settle_many
from .records import event_records, rejected_records
from .sessions import SessionFactory, insert_missing, rowcount, session_factory, session_scope
from .tables import BounceEvent, CompletedHandler, Rejection, now

__all__ = ["SQLAlchemyStore"]

_WHERE = "bounce store (SQLAlchemy)"


class SQLAlchemyStore:
    """The :class:`~bounce_middleware.store.Store` protocol in the app's database.

    ``bind`` is an ``Engine`` or a ``sessionmaker`` (any callable returning a
    plain ``Session``). Give it its own sessions, not a ``scoped_session`` or a
    ``zope.sqlalchemy``-managed one: each call commits at once, independently
    of the request. An event is recorded with one ``INSERT ... ON CONFLICT DO
    NOTHING`` (SQLite, PostgreSQL; a savepoint elsewhere), so the unique key
    decides between concurrent deliveries of any number of processes; leases
    are conditional UPDATEs. A batch (:meth:`claim_many`, :meth:`settle_many`)
    is one transaction of a few statements, whatever its size. Any database
    error is raised as :class:`~bounce_middleware.errors.StoreUnavailable`,
    without the statement's parameters.

    :meth:`complete` takes ``session=``: a handler that writes to the same
    database records its completion in its own transaction, so that both
    commit together or not at all (see :meth:`writes_through`), and only while
    its delivery still holds the event's lease.
    """

    def __init__(self, bind: sa.Engine | Callable[[], orm.Session]) -> None:
        self._factory: SessionFactory = session_factory(bind)
        self._engine: sa.Engine | None = _engine_of(bind)

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        token = new_token()
        started = time.time()
        event = event_row(bounce, token, started, lease_seconds)
        key = event["key"]
        try:
            with session_scope(self._factory) as session:
                if insert_missing(session, BounceEvent, [event], ["key"]):
                    return Claim(bounce.key, ClaimState.NEW, frozenset(), token)
                # A known event: take the lease if it is unfinished and free (or expired).
                taken = session.execute(
                    sa.update(BounceEvent)
                    .where(
                        BounceEvent.key == key,
                        BounceEvent.finished.is_(False),
                        sa.or_(
                            BounceEvent.lease_until.is_(None), BounceEvent.lease_until <= started
                        ),
                    )
                    .values(
                        lease_token=token,
                        lease_until=started + lease_seconds,
                        attempts=BounceEvent.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
                finished = session.scalar(
                    sa.select(BounceEvent.finished).where(BounceEvent.key == key)
                )
                completed = frozenset(
                    session.scalars(
                        sa.select(CompletedHandler.handler).where(CompletedHandler.event_key == key)
                    )
                )
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: claim", exc) from None
        if rowcount(taken) == 1:
            return Claim(bounce.key, ClaimState.RESUMED, completed, token)
        if finished:
            return Claim(bounce.key, ClaimState.DONE, completed)
        return Claim(bounce.key, ClaimState.BUSY, completed)

    def claim_many(self, bounces: Sequence[Bounce], *, lease_seconds: float) -> list[Claim]:
        """:meth:`claim` each of ``bounces`` in one transaction (see :mod:`.batch`)."""
        try:
            with session_scope(self._factory) as session:
                return claim_many(session, bounces, lease_seconds=lease_seconds)
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: claim_many", exc) from None

    def complete(
        self,
        claim: Claim,
        handler: str,
        *,
        finished: bool = False,
        session: orm.Session | None = None,
    ) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim.

        With ``session``, the writes go through that session and are committed
        (or rolled back) by its owner, together with the handler's own writes;
        and they are made only while ``claim`` still holds the event's lease.
        When its lease expired and another delivery took the event over, this
        raises :class:`~bounce_middleware.errors.StoreUnavailable` instead, so
        that the handler's transaction rolls back: the other delivery applies
        the handler, and it is applied exactly once.
        """
        try:
            if session is not None:
                held = _complete_if_held(session, claim, handler, finished=finished)
            else:
                with session_scope(self._factory) as own:
                    _complete(own, claim, handler, finished=finished)
                return
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: complete", exc) from None
        if not held:
            raise StoreUnavailable(
                f"{_WHERE}: complete: the lease was taken over by another delivery; "
                "this delivery's transaction must roll back"
            )

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        try:
            with session_scope(self._factory) as session:
                _release(session, claim, finished=finished)
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: release", exc) from None

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """:meth:`complete` each settlement's handlers and :meth:`release` its claim,
        in one transaction."""
        try:
            with session_scope(self._factory) as session:
                settle_many(session, settlements)
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: settle_many", exc) from None

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        rejected: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events (or, with ``rejected=True``, rejected records), newest first."""
        try:
            with session_scope(self._factory) as session:
                if rejected:
                    return rejected_records(session, kind, email, unfinished, limit)
                return event_records(session, kind, email, unfinished, limit)
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: records", exc) from None

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        """Keep an authenticated request refused with 400 (once per provider and body)."""
        key = rejection_key(provider, body)
        row = {
            "key": storable(key),
            "provider": storable(provider),
            "reason": storable(reason),
            "received_at": now(),
            "resolved": False,
            "body": body,
        }
        try:
            with session_scope(self._factory) as session:
                insert_missing(session, Rejection, [row], ["key"])
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: reject", exc) from None
        return key

    def resolve(self, key: str) -> None:
        """Mark a rejected record replayed."""
        try:
            with session_scope(self._factory) as session:
                session.execute(
                    sa.update(Rejection)
                    .where(Rejection.key == storable(key))
                    .values(resolved=True)
                    .execution_options(synchronize_session=False)
                )
        except sa_exc.SQLAlchemyError as exc:
            raise unavailable(f"{_WHERE}: resolve", exc) from None

    def prune(self, before: datetime, *, limit: int) -> int:
        """Delete at most ``limit`` finished events received before ``before``, oldest
        first, with their completions (see :mod:`.pruning`)."""
        return pruning.prune(self._factory, before, limit=limit)

    def counts(self, *, before: datetime | None = None) -> StoreCounts:
        """Count events, unfinished events and rejected requests (see :mod:`.pruning`)."""
        return pruning.counts(self._factory, before)

    def writes_through(self, session: orm.Session) -> bool:
        """True when ``session`` works on this store's database, so that
        ``complete(..., session=session)`` commits with the session's own writes."""
        try:
            theirs = session.get_bind().engine
            ours = self._engine or _probe_engine(self._factory)
        except (sa_exc.SQLAlchemyError, TypeError, AttributeError):
            # A session without one default bind (several binds, none for a plain query).
            return False
        if self._engine is None:
            self._engine = ours
        if theirs is ours:
            return True
        # Two engines on one database file or server count as one; in-memory ones never do.
        database = ours.url.database
        return theirs.url == ours.url and database not in (None, "", ":memory:")

    def close(self) -> None:
        """Nothing to close: the engine belongs to the application."""


def _complete(session: orm.Session, claim: Claim, handler: str, *, finished: bool) -> None:
    key = storable(claim.key)
    row = {"event_key": key, "handler": handler, "completed_at": now()}
    insert_missing(session, CompletedHandler, [row], ["event_key", "handler"])
    if finished:
        _release(session, claim, finished=True)


def _complete_if_held(session: orm.Session, claim: Claim, handler: str, *, finished: bool) -> bool:
    """:func:`_complete`, in the caller's transaction, only while ``claim`` holds the lease.

    The conditional UPDATE comes first and always writes the event's row, so it
    also locks that row until the caller's transaction ends: a delivery taking
    the lease over meanwhile waits for it (PostgreSQL; SQLite has one writer at
    a time anyway), then sees this completion. Returns False, having written
    nothing, when the lease is another delivery's.
    """
    if not claim.token:
        return False  # a claim without a lease (BUSY, DONE) holds nothing
    held = sa.update(BounceEvent).where(
        BounceEvent.key == storable(claim.key), BounceEvent.lease_token == claim.token
    )
    if finished:
        held = held.values(finished=True, lease_token=None, lease_until=None)
    else:
        # Keeps the lease as it is: the delivery goes on with its other handlers.
        held = held.values(lease_token=BounceEvent.lease_token)
    if rowcount(session.execute(held.execution_options(synchronize_session=False))) != 1:
        return False
    row = {"event_key": storable(claim.key), "handler": handler, "completed_at": now()}
    insert_missing(session, CompletedHandler, [row], ["event_key", "handler"])
    return True


def _release(session: orm.Session, claim: Claim, *, finished: bool) -> None:
    key = storable(claim.key)
    # Only our own lease: after it expired, another delivery may hold a new one.
    held = BounceEvent.lease_token == claim.token
    if finished:
        # One UPDATE: finish the event, and free the lease if it is still ours.
        statement = (
            sa.update(BounceEvent)
            .where(BounceEvent.key == key)
            .values(
                finished=True,
                lease_token=sa.case((held, None), else_=BounceEvent.lease_token),
                lease_until=sa.case((held, None), else_=BounceEvent.lease_until),
            )
        )
    else:
        statement = (
            sa.update(BounceEvent)
            .where(BounceEvent.key == key, held)
            .values(lease_token=None, lease_until=None)
        )
    session.execute(statement.execution_options(synchronize_session=False))


def _engine_of(bind: Any) -> sa.Engine | None:
    if isinstance(bind, sa.Engine):
        return bind
    if isinstance(bind, sa.Connection):
        return bind.engine
    configured = getattr(bind, "kw", {}).get("bind")  # a sessionmaker(bind=...)
    return _engine_of(configured) if configured is not None else None


def _probe_engine(factory: SessionFactory) -> sa.Engine:
    # A session opens no connection until used: asking it for its bind is free.
    session = factory()
    try:
        return session.get_bind().engine
    finally:
        session.close()
