"""The store's ``prune`` and ``counts`` (see :mod:`bounce_middleware.retention`).

A prune batch reads which events to delete in one short transaction, walking
``bounce_events`` by ``id`` (the order of receipt) a page at a time and
stopping at the first event received well after the cut-off, so no index on
``received_at`` is needed and the newer part of the table is never scanned.
It deletes them in a second transaction: their completions first (SQLite
enforces the foreign key's ``ON DELETE CASCADE`` only when the application
turned foreign keys on), then the events, each statement checking again that
the event is finished and old.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from bounce_middleware.retention import DISORDER, StoreCounts
from bounce_middleware.store import aware, unavailable

from .sessions import SessionFactory, rowcount, session_scope
from .tables import BounceEvent, CompletedHandler, Rejection

__all__ = ["counts", "prune"]

# Rows read per statement by the walk; ids per DELETE (SQLite before 3.32 binds 999 at most).
_PAGE = 1000
_CHUNK = 500


_WHERE = "bounce store (SQLAlchemy)"


def prune(factory: SessionFactory, before: datetime, *, limit: int) -> int:
    """Delete at most ``limit`` finished events received before ``before``, oldest first."""
    try:
        return _prune(factory, before, limit)
    except sa_exc.SQLAlchemyError as exc:
        raise unavailable(f"{_WHERE}: prune", exc) from None


def _prune(factory: SessionFactory, before: datetime, limit: int) -> int:
    if limit < 1:
        return 0
    # Timestamps are compared in UTC: SQLite keeps them as naive UTC text. A naive
    # cut-off is UTC too (astimezone alone would read it as the host's local time).
    before = aware(before).astimezone(UTC)
    with session_scope(factory) as session:
        doomed = _doomed(session, before, limit)
    if not doomed:
        return 0
    deleted = 0
    with session_scope(factory) as session:
        for chunk in _chunks(doomed):
            old = (
                BounceEvent.id.in_(chunk),
                BounceEvent.finished.is_(True),
                BounceEvent.received_at < before,
            )
            keys = sa.select(BounceEvent.key).where(*old).scalar_subquery()
            session.execute(
                sa.delete(CompletedHandler)
                .where(CompletedHandler.event_key.in_(keys))
                .execution_options(synchronize_session=False)
            )
            result = session.execute(
                sa.delete(BounceEvent).where(*old).execution_options(synchronize_session=False)
            )
            deleted += rowcount(result)
    return deleted


def _doomed(session: orm.Session, before: datetime, limit: int) -> list[int]:
    """The ids of the first ``limit`` finished events received before ``before``."""
    horizon = before + DISORDER
    found: list[int] = []
    after: int | None = None
    while True:
        query = sa.select(BounceEvent.id, BounceEvent.received_at, BounceEvent.finished)
        if after is not None:
            query = query.where(BounceEvent.id > after)
        rows = session.execute(query.order_by(BounceEvent.id).limit(_PAGE)).all()
        for event_id, received_at, finished in rows:
            received = aware(received_at)
            if received >= horizon:
                return found
            if finished and received < before:
                found.append(event_id)
                if len(found) >= limit:
                    return found
        if len(rows) < _PAGE:
            return found
        after = rows[-1][0]


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def counts(factory: SessionFactory, before: datetime | None) -> StoreCounts:
    """Count events, unfinished events and rejected requests: two aggregate queries.

    ``count(CASE ...)`` rather than ``FILTER``, which MySQL and MariaDB lack.
    """
    unfinished = BounceEvent.finished.is_(False)
    old: sa.ColumnElement[bool] = sa.false()
    if before is not None:
        cut = aware(before).astimezone(UTC)
        old = sa.and_(BounceEvent.finished.is_(True), BounceEvent.received_at < cut)
    events = sa.select(
        sa.func.count(),
        sa.func.count(sa.case((unfinished, 1))),
        sa.func.min(sa.case((unfinished, BounceEvent.received_at))),
        sa.func.count(sa.case((old, 1))),
    ).select_from(BounceEvent)
    rejections = sa.select(
        sa.func.count(), sa.func.count(sa.case((Rejection.resolved.is_(False), 1)))
    ).select_from(Rejection)
    try:
        with session_scope(factory) as session:
            total, waiting, oldest, prunable = session.execute(events).one()
            rejected, unresolved = session.execute(rejections).one()
    except sa_exc.SQLAlchemyError as exc:
        raise unavailable(f"{_WHERE}: counts", exc) from None
    return StoreCounts(
        events=total,
        unfinished=waiting,
        rejected=rejected,
        rejected_unresolved=unresolved,
        oldest_unfinished=None if oldest is None else aware(oldest),
        prunable=prunable,
    )
