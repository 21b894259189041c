"""The SQL of :class:`~bounce_middleware.postgres_store.PostgresStore`'s ``records``.

Each listing is one statement (the completed handlers of each event gathered by
a subquery), so that it reads one snapshot in autocommit mode.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from .model import BounceKind
from .store import Record, address_key, kind_of, rejected_record

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

__all__ = ["events", "rejected"]


def events(
    conn: Connection[TupleRow],
    kind: BounceKind | None,
    email: str | None,
    *,
    unfinished: bool,
    limit: int | None,
) -> list[Record]:
    """Stored events, newest first; ``email`` matched by its folded ``email_key``."""
    clauses: list[str] = []
    params: list[Any] = []
    if kind is not None:
        clauses.append("kind = %s")
        params.append(BounceKind(kind).value)
    if email is not None:
        clauses.append("email_key = %s")
        params.append(address_key(email))
    if unfinished:
        clauses.append("finished_at IS NULL")
    query = (
        "SELECT key, provider, email, kind, type, received_at, finished_at IS NOT NULL, "
        "attempts, body, ARRAY(SELECT handler FROM bounce_completion WHERE event = e.id) "
        "FROM bounce_event AS e"
    )
    if clauses:
        query += f" WHERE {' AND '.join(clauses)}"
    query += " ORDER BY id DESC"
    if limit is not None:
        query += " LIMIT %s"
        params.append(max(limit, 0))
    return [
        Record(
            key=key,
            provider=provider,
            email=address,
            kind=kind_of(kind_value),
            type=type_,
            received_at=received_at.astimezone(UTC),
            finished=finished,
            completed=frozenset(completed),
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
            finished,
            attempts,
            body,
            completed,
        ) in conn.execute(query, params).fetchall()
    ]


def rejected(conn: Connection[TupleRow], unfinished: bool, limit: int | None) -> list[Record]:
    """Rejected requests, newest first; ``unfinished``: not yet resolved."""
    query = "SELECT key, provider, reason, received_at, resolved_at, body FROM bounce_rejected"
    params: list[Any] = []
    if unfinished:
        query += " WHERE resolved_at IS NULL"
    query += " ORDER BY id DESC"
    if limit is not None:
        query += " LIMIT %s"
        params.append(max(limit, 0))
    return [
        rejected_record(
            key=key,
            provider=provider,
            received_at=received_at.astimezone(UTC),
            resolved=resolved_at is not None,
            body=bytes(body),
            reason=reason,
        )
        for key, provider, reason, received_at, resolved_at, body in conn.execute(query, params)
    ]
