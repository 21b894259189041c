"""``DjangoStore``'s ``prune`` and ``counts`` (see :mod:`bounce_middleware.retention`).

``received_at`` is indexed in this table (0001), so a prune batch finds its
oldest finished events through the index in one query, then deletes them by
id, each ``DELETE`` checking again that the event is finished and old. The
completions live in the event's own row: they go with it.

With ``USE_TZ = False`` Django keeps naive times in ``TIME_ZONE`` (and refuses
aware ones on SQLite and MySQL): a cut-off is turned into that zone's naive time
before the query, and the oldest unfinished time read back is made aware again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, router, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from bounce_middleware.retention import StoreCounts
from bounce_middleware.store import aware

from .db import store_unavailable
from .models import BounceEvent, RejectedRequest

__all__ = ["counts", "prune"]

# Ids per DELETE: Django binds each one (SQLite before 3.32 takes 999 at most).
_CHUNK = 500


def _as_stored(moment: datetime) -> datetime:
    """``moment`` (naive: UTC, as every store takes it) as ``received_at`` is compared:
    aware with ``USE_TZ``, else naive in ``TIME_ZONE``."""
    moment = aware(moment)
    if settings.USE_TZ:
        return moment
    return timezone.make_naive(moment, timezone.get_default_timezone())


def _as_read(moment: datetime) -> datetime:
    """A ``received_at`` read back, aware in UTC (naive ones are in ``TIME_ZONE``)."""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment.astimezone(UTC)


def prune(db: str, before: datetime, *, limit: int) -> int:
    """Delete at most ``limit`` finished events received before ``before``, oldest first."""
    if limit < 1:
        return 0
    old = Q(finished=True, received_at__lt=_as_stored(before))
    events = BounceEvent.objects.using(db)
    try:
        doomed = list(
            events.filter(old).order_by("received_at", "id").values_list("id", flat=True)[:limit]
        )
        deleted = 0
        with transaction.atomic(using=db):
            for start in range(0, len(doomed), _CHUNK):
                chunk = doomed[start : start + _CHUNK]
                deleted += events.filter(old, id__in=chunk).delete()[0]
    except DatabaseError as exc:
        raise store_unavailable(db, "prune", exc) from None
    return deleted


def counts(using: str | None, before: datetime | None) -> StoreCounts:
    """Count events, unfinished events and rejected requests: two aggregate queries."""
    db = using or router.db_for_read(BounceEvent)
    unfinished = Q(finished=False)
    wanted = {
        "total": Count("id"),
        "unfinished": Count("id", filter=unfinished),
        "oldest": Min("received_at", filter=unfinished),
    }
    if before is not None:
        old = Q(finished=True, received_at__lt=_as_stored(before))
        wanted["prunable"] = Count("id", filter=old)
    try:
        events = BounceEvent.objects.using(db).aggregate(**wanted)
        rejected = RejectedRequest.objects.using(using or router.db_for_read(RejectedRequest))
        requests = rejected.aggregate(
            total=Count("id"), unresolved=Count("id", filter=Q(resolved=False))
        )
    except DatabaseError as exc:
        raise store_unavailable(db, "counts", exc) from None
    return StoreCounts(
        events=events["total"],
        unfinished=events["unfinished"],
        rejected=requests["total"],
        rejected_unresolved=requests["unresolved"],
        oldest_unfinished=None if events["oldest"] is None else _as_read(events["oldest"]),
        prunable=events.get("prunable", 0),
    )
