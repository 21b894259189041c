"""The SQL of :class:`~bounce_middleware.sqlite_store.SQLiteStore`'s ``prune`` and ``counts``.

A prune batch first reads which events to delete, in a read transaction (WAL
readers take no lock): it walks the events in order of ``id`` (the order of
receipt, as ids grow) and stops at the first event received well after the
cut-off (:data:`~bounce_middleware.retention.DISORDER`), so a prune never scans
the newer part of the table, which has no index on ``received_at`` (one more
index page written by every claim). Then it deletes those events in a write
transaction of its own, one indexed ``DELETE`` per event that checks again that
it is finished and old; their completions go with them (``ON DELETE CASCADE``).
The write lock is held for those deletes only: a webhook waits a millisecond
or two, never for a scan.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from .retention import DISORDER, StoreCounts
from .store import aware

__all__ = ["counts", "prune"]

Transaction = Callable[..., AbstractContextManager[sqlite3.Connection]]

_DELETE = """DELETE FROM bounce_event
   WHERE id = ? AND finished_at IS NOT NULL AND received_at < ?"""

_COUNT_EVENTS = """SELECT count(*),
       coalesce(sum(finished_at IS NULL), 0),
       min(CASE WHEN finished_at IS NULL THEN received_at END),
       coalesce(sum(? IS NOT NULL AND finished_at IS NOT NULL AND received_at < ?), 0)
   FROM bounce_event"""

_COUNT_REJECTED = """SELECT count(*), coalesce(sum(resolved_at IS NULL), 0)
   FROM bounce_rejected"""


def stored_time(moment: datetime) -> str:
    """``moment`` as ``received_at`` is stored (ISO 8601 in UTC), so text compares as time."""
    return aware(moment).astimezone(UTC).isoformat(timespec="microseconds")


def prune(transaction: Transaction, before: datetime, *, limit: int) -> int:
    """Delete at most ``limit`` finished events received before ``before``, oldest first."""
    if limit < 1:
        return 0
    cut = stored_time(before)
    horizon = stored_time(before + DISORDER)
    with transaction(write=False) as conn:
        doomed = _doomed(conn, cut, horizon, limit)
    if not doomed:
        return 0
    with transaction(write=True) as conn:
        cursor = conn.executemany(_DELETE, [(event_id, cut) for event_id in doomed])
        return max(cursor.rowcount, 0)


def _doomed(conn: sqlite3.Connection, cut: str, horizon: str, limit: int) -> list[int]:
    """The ids of the first ``limit`` finished events received before ``cut``."""
    found: list[int] = []
    cursor = conn.execute(
        "SELECT id, received_at, finished_at IS NOT NULL FROM bounce_event ORDER BY id"
    )
    try:
        while rows := cursor.fetchmany(500):
            for event_id, received_at, finished in rows:
                if received_at >= horizon:
                    return found
                if finished and received_at < cut:
                    found.append(event_id)
                    if len(found) >= limit:
                        return found
        return found
    finally:
        cursor.close()


def counts(conn: sqlite3.Connection, before: datetime | None) -> StoreCounts:
    """Count the events, unfinished events and rejected requests: two scans, no rows read out."""
    cut = None if before is None else stored_time(before)
    events, unfinished, oldest, prunable = conn.execute(_COUNT_EVENTS, (cut, cut)).fetchone()
    rejected, unresolved = conn.execute(_COUNT_REJECTED).fetchone()
    return StoreCounts(
        events=events,
        unfinished=unfinished,
        rejected=rejected,
        rejected_unresolved=unresolved,
        oldest_unfinished=None if oldest is None else aware(datetime.fromisoformat(oldest)),
        prunable=prunable,
    )
