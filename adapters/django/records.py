"""What ``DjangoStore.records`` lists: stored events, or rejected requests, as ``Record``s."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, router

from bounce_middleware.model import BounceKind
from bounce_middleware.store import (
    Record,
    address_key,
    kind_of,
    rejected_record,
    rejections_can_match,
)

from .db import store_unavailable
from .models import BounceEvent, RejectedRequest


def event_records(
    using: str | None,
    kind: BounceKind | None,
    email: str | None,
    unfinished: bool,
    limit: int | None,
) -> list[Record]:
    """Accepted events, newest first; ``email`` matched folded (``email_key``)."""
    events = BounceEvent.objects.using(using or router.db_for_read(BounceEvent))
    if kind is not None:
        events = events.filter(kind=kind.value)
    if email is not None:
        events = events.filter(email_key=address_key(email))
    if unfinished:
        events = events.filter(finished=False)
    return _read(events, limit, _record)


def rejected_records(
    using: str | None,
    kind: BounceKind | None,
    email: str | None,
    unfinished: bool,
    limit: int | None,
) -> list[Record]:
    """Rejected requests, newest first; ``unfinished``: not yet replayed."""
    # A rejected record has kind "unknown" and no address.
    if not rejections_can_match(kind, email):
        return []
    rows = RejectedRequest.objects.using(using or router.db_for_read(RejectedRequest))
    if unfinished:
        rows = rows.filter(resolved=False)
    return _read(rows, limit, _rejected_record)


def _read(rows: Any, limit: int | None, build: Any) -> list[Record]:
    db = rows.db
    if limit is not None:
        rows = rows[: max(limit, 0)]
    try:
        return [build(row) for row in rows]
    except DatabaseError as exc:
        raise store_unavailable(db, "records", exc) from None


def _record(event: BounceEvent) -> Record:
    return Record(
        key=event.key,
        provider=event.provider,
        email=event.email,
        kind=kind_of(event.kind),
        type=event.type,
        received_at=event.received_at,
        finished=event.finished,
        completed=event.completed_handlers,
        body=bytes(event.body),
        attempts=event.attempts,
    )


def _rejected_record(row: RejectedRequest) -> Record:
    return rejected_record(
        key=row.key,
        provider=row.provider,
        received_at=row.received_at,
        resolved=row.resolved,
        body=bytes(row.body),
        reason=row.reason,
    )
