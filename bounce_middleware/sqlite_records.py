"""The SQL of :class:`~bounce_middleware.sqlite_store.SQLiteStore`'s ``records``.

Each function runs inside a read transaction the store has begun, so that the
events and their completions are read from one snapshot.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from .model import BounceKind
from .store import Record, address_key, kind_of, rejected_record

__all__ = ["events", "rejected"]


def events(
    conn: sqlite3.Connection,
    *,
    kind: BounceKind | None,
    email: str | None,
    unfinished: bool,
    limit: int | None,
) -> list[Record]:
    """Stored events, newest first; ``email`` matched by its folded ``email_key``."""
    clauses: list[str] = []
    params: list[object] = []
    if kind is not None:
        clauses.append("kind = ?")
        params.append(BounceKind(kind).value)
    if email is not None:
        clauses.append("email_key = ?")
        params.append(address_key(email))
    if unfinished:
        clauses.append("finished_at IS NULL")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    select = f"FROM bounce_event {where} ORDER BY id DESC"
    if limit is not None:
        select += " LIMIT ?"
        params.append(max(limit, 0))
    rows = conn.execute(
        "SELECT id, key, provider, email, kind, type, received_at, finished_at, "
        f"attempts, body {select}",
        params,
    ).fetchall()
    completed: dict[int, set[str]] = {}
    for event_id, name in conn.execute(
        f"SELECT event, handler FROM bounce_completion WHERE event IN (SELECT id {select})",
        params,
    ):
        completed.setdefault(event_id, set()).add(name)
    return [
        Record(
            key=key,
            provider=provider,
            email=address,
            kind=kind_of(kind_value),
            type=type_,
            received_at=datetime.fromisoformat(received_at),
            finished=finished_at is not None,
            completed=frozenset(completed.get(event_id, ())),
            body=bytes(body),
            attempts=attempts,
        )
        for (
            event_id,
            key,
            provider,
            address,
            kind_value,
            type_,
            received_at,
            finished_at,
            attempts,
            body,
        ) in rows
    ]


def rejected(conn: sqlite3.Connection, *, unfinished: bool, limit: int | None) -> list[Record]:
    """Rejected requests, newest first; ``unfinished``: not yet resolved."""
    select = "SELECT key, provider, reason, received_at, resolved_at, body FROM bounce_rejected"
    params: list[object] = []
    if unfinished:
        select += " WHERE resolved_at IS NULL"
    select += " ORDER BY id DESC"
    if limit is not None:
        select += " LIMIT ?"
        params.append(max(limit, 0))
    return [
        rejected_record(
            key=key,
            provider=provider,
            received_at=datetime.fromisoformat(received_at),
            resolved=resolved_at is not None,
            body=bytes(body),
            reason=reason,
        )
        for key, provider, reason, received_at, resolved_at, body in conn.execute(select, params)
    ]
