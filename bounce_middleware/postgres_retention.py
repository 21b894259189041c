"""The SQL of :class:`~bounce_middleware.postgres_store.PostgresStore`'s ``prune`` and ``counts``.

A prune batch reads which events to delete by walking ``bounce_event`` in
order of ``id`` (the primary key; ids follow the order of receipt), a page per
statement, and stops at the first event received well after the cut-off
(:data:`~bounce_middleware.retention.DISORDER`): no index on ``received_at``
is needed (it would be one more index write on every claim), and the newer
part of the table is never scanned. It then deletes those events with ONE
statement that checks again that each is finished and old, and skips a row a
delivery has locked at that moment (``FOR UPDATE SKIP LOCKED``), so neither
waits for the other; the completions go with them (``ON DELETE CASCADE``). A
skipped row leaves room in the batch: the walk goes on past it for more.
Every statement runs on its own in autocommit mode: no transaction outlives it.

``counts`` is two aggregates in one statement, allowed :data:`COUNT_TIMEOUT`
seconds at least: the store's ``timeout`` is meant for a webhook's statements,
and counting a large table takes longer than claiming one event.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .retention import DISORDER, StoreCounts
from .store import aware

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

__all__ = ["COUNT_TIMEOUT", "counts", "prune"]

#: Seconds the counting statement may run, at least.
COUNT_TIMEOUT = 60.0

# Rows read per statement by the walk.
_PAGE = 1000

_WALK = """SELECT id, received_at, finished_at IS NOT NULL FROM bounce_event
   WHERE id > %s ORDER BY id LIMIT %s"""

_DELETE = """WITH doomed AS (
    SELECT id FROM bounce_event
    WHERE id = ANY(%s::bigint[]) AND finished_at IS NOT NULL AND received_at < %s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM bounce_event AS e USING doomed WHERE e.id = doomed.id"""

_COUNTS = """SELECT e.total, e.unfinished, e.oldest, e.prunable, r.total, r.unresolved
FROM (SELECT count(*) AS total,
             count(*) FILTER (WHERE finished_at IS NULL) AS unfinished,
             min(received_at) FILTER (WHERE finished_at IS NULL) AS oldest,
             count(*) FILTER (WHERE finished_at IS NOT NULL AND received_at < %s) AS prunable
      FROM bounce_event) AS e,
     (SELECT count(*) AS total, count(*) FILTER (WHERE resolved_at IS NULL) AS unresolved
      FROM bounce_rejected) AS r"""


def prune(conn: Connection[TupleRow], before: datetime, *, limit: int) -> int:
    """Delete at most ``limit`` finished events received before ``before``, oldest first.

    A row skipped because a delivery holds it does not count against ``limit``: the
    walk goes on past it, so that fewer than ``limit`` go only when no more could.
    """
    if limit < 1:
        return 0
    before = aware(before)  # naive: UTC, as every store reads it
    horizon = before + DISORDER
    deleted = 0
    after = -(2**63)  # below every bigint id
    while deleted < limit:
        doomed, more = _doomed(conn, before, horizon, limit - deleted, after)
        if doomed:
            deleted += max(conn.execute(_DELETE, (doomed, before)).rowcount, 0)
        if not more:
            return deleted
        after = doomed[-1]
    return deleted


def _doomed(
    conn: Connection[TupleRow], before: datetime, horizon: datetime, limit: int, after: int
) -> tuple[list[int], bool]:
    """The ids of the first ``limit`` finished events received before ``before`` whose id
    is above ``after``; and whether the walk stopped at ``limit`` (more may follow)."""
    found: list[int] = []
    while True:
        rows = conn.execute(_WALK, (after, _PAGE)).fetchall()
        for event_id, received_at, finished in rows:
            if received_at >= horizon:
                return found, False
            if finished and received_at < before:
                found.append(event_id)
                if len(found) >= limit:
                    return found, True
        if len(rows) < _PAGE:
            return found, False
        after = rows[-1][0]


def counts(conn: Connection[TupleRow], before: datetime | None, timeout: float) -> StoreCounts:
    """Count events, unfinished events and rejected requests in one statement."""
    with conn.transaction():
        allowed = math.ceil(max(timeout, COUNT_TIMEOUT) * 1000)
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(allowed),))
        row = conn.execute(_COUNTS, (None if before is None else aware(before),)).fetchone()
    assert row is not None  # aggregates always return a row
    events, unfinished, oldest, prunable, rejected, unresolved = row
    return StoreCounts(
        events=events,
        unfinished=unfinished,
        rejected=rejected,
        rejected_unresolved=unresolved,
        oldest_unfinished=None if oldest is None else oldest.astimezone(UTC),
        prunable=prunable,
    )
