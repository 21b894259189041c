"""The store's listings: accepted events and rejected requests, as ``Record`` objects."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm

from bounce_middleware.model import BounceKind
from bounce_middleware.store import (
    Record,
    address_key,
    aware,
    kind_of,
    rejected_record,
    rejections_can_match,
)

from .tables import BounceEvent, CompletedHandler, Rejection

__all__ = ["event_records", "rejected_records"]


def event_records(
    session: orm.Session,
    kind: BounceKind | None,
    email: str | None,
    unfinished: bool,
    limit: int | None,
) -> list[Record]:
    """Accepted events, newest first, as ``Store.records`` lists them."""
    query = sa.select(BounceEvent).options(orm.undefer(BounceEvent.body))
    if kind is not None:
        query = query.where(BounceEvent.kind == BounceKind(kind).value)
    if email is not None:
        query = query.where(BounceEvent.email_key == address_key(email))
    if unfinished:
        query = query.where(BounceEvent.finished.is_(False))
    query = query.order_by(BounceEvent.id.desc()).limit(_limit(limit))
    events = session.scalars(query).all()
    done: dict[str, set[str]] = {}
    if events:
        rows = session.execute(
            sa.select(CompletedHandler.event_key, CompletedHandler.handler).where(
                CompletedHandler.event_key.in_([e.key for e in events])
            )
        )
        for event_key, handler in rows:
            done.setdefault(event_key, set()).add(handler)
    return [
        Record(
            key=e.key,
            provider=e.provider,
            email=e.email,
            kind=kind_of(e.kind),
            type=e.type,
            received_at=aware(e.received_at),
            finished=e.finished,
            completed=frozenset(done.get(e.key, ())),
            body=e.body,
            attempts=e.attempts,
        )
        for e in events
    ]


def rejected_records(
    session: orm.Session,
    kind: BounceKind | None,
    email: str | None,
    unfinished: bool,
    limit: int | None,
) -> list[Record]:
    """Rejected requests, newest first, as ``Store.records(rejected=True)`` lists them."""
    if not rejections_can_match(kind, email):
        return []
    query = sa.select(Rejection).options(orm.undefer(Rejection.body))
    if unfinished:
        query = query.where(Rejection.resolved.is_(False))
    query = query.order_by(Rejection.id.desc()).limit(_limit(limit))
    return [
        rejected_record(
            key=r.key,
            provider=r.provider,
            received_at=aware(r.received_at),
            resolved=r.resolved,
            body=r.body,
            reason=r.reason,
        )
        for r in session.scalars(query)
    ]


def _limit(limit: int | None) -> int | None:
    return None if limit is None else max(limit, 0)
