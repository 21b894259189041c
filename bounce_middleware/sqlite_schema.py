"""The tables of :class:`~bounce_middleware.sqlite_store.SQLiteStore`, and their upgrades.

The version is kept in the store's own ``bounce_schema`` table, not in ``PRAGMA
user_version``, which belongs to an application sharing the file. A file of an
older version is upgraded in place by the first connection that finds it, in
one ``BEGIN IMMEDIATE`` transaction: processes starting together queue on the
write lock, and whoever comes later finds the work done. A file of a newer
version is refused (this code cannot know what changed).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import StoreUnavailable
from .store import address_key

__all__ = ["SCHEMA_VERSION", "ensure_schema"]

#: Version of the tables below. 2: ``email_key`` (Unicode-folded address) replaces
#: ``email_lower`` (``str.lower()``: neither NFKC nor full folding), and rejected
#: requests get ``bounce_rejected``. 3: ``bounce_completion`` is keyed by the
#: event's integer ``id`` instead of its text ``key``.
SCHEMA_VERSION = 3

_EVENT = """CREATE TABLE bounce_event (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    received_at TEXT NOT NULL,
    finished_at TEXT,
    attempts INTEGER NOT NULL,
    body BLOB NOT NULL,
    lease_token TEXT,
    lease_expires REAL
)"""
# No index on email_key or kind: each index is another page written to the WAL on
# every webhook (claim 60 -> 38 us measured), while filtering by them is an
# occasional `bounce-middleware list`, for which a scan of the table is fine.

# Keyed by the event's id, which grows with every new event: a batch's completions
# are appended to the last pages of the table. Keyed by the random text key (version
# 2), each landed on a page of its own: settling a 1,000-event batch in a store of
# 100,000 events wrote about 1,100 pages to the WAL, and 145 now.
_COMPLETION = """CREATE TABLE bounce_completion (
    event INTEGER NOT NULL REFERENCES bounce_event (id) ON DELETE CASCADE,
    handler TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (event, handler)
) WITHOUT ROWID"""

# Rejected requests live apart from events: never claimable, never in an event listing.
_REJECTED = """CREATE TABLE bounce_rejected (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL,
    resolved_at TEXT,
    body BLOB NOT NULL
)"""

_CREATE = (
    _EVENT,
    _COMPLETION,
    _REJECTED,
    "CREATE TABLE bounce_schema (version INTEGER NOT NULL)",
    f"INSERT INTO bounce_schema (version) VALUES ({SCHEMA_VERSION})",
)

# Version 1 -> 2. bounce_fold is registered on the connection for the UPDATE only.
_UPGRADE_1 = (
    "ALTER TABLE bounce_event RENAME COLUMN email_lower TO email_key",
    "UPDATE bounce_event SET email_key = bounce_fold(email)",
    _REJECTED,
    "UPDATE bounce_schema SET version = 2",
)

# Version 2 -> 3: the completions move to a table keyed by the event's id.
_UPGRADE_2 = (
    _COMPLETION.replace("TABLE bounce_completion", "TABLE bounce_completion_v3", 1),
    """INSERT INTO bounce_completion_v3 (event, handler, completed_at)
       SELECT e.id, c.handler, c.completed_at
       FROM bounce_completion AS c JOIN bounce_event AS e ON e.key = c.key""",
    "DROP TABLE bounce_completion",
    "ALTER TABLE bounce_completion_v3 RENAME TO bounce_completion",
    "UPDATE bounce_schema SET version = 3",
)


def ensure_schema(conn: sqlite3.Connection, path: Path, *, read_only: bool) -> None:
    """Create the tables in a new file, or upgrade those of an older version.

    Raises ``sqlite3.Error`` for what SQLite refuses, and ``StoreUnavailable`` for a
    file this version cannot use (newer schema; older one opened read-only).
    """
    # Read first, so that only the first connection to a new or old file takes the write lock.
    version = schema_version(conn, path)
    if version == SCHEMA_VERSION:
        return
    if read_only:
        if version == 0:
            raise sqlite3.OperationalError("the file holds no bounce-middleware tables")
        raise StoreUnavailable(
            f"SQLite bounce store {path}: its schema version {version} is older than this "
            f"bounce-middleware's ({SCHEMA_VERSION}), and a read-only store cannot upgrade it; "
            "open it once writable (the server does on its first request)"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have done it meanwhile.
        version = schema_version(conn, path)
        if version == 0:
            statements: tuple[str, ...] = _CREATE
        elif version == 1:
            conn.create_function("bounce_fold", 1, address_key, deterministic=True)
            statements = _UPGRADE_1 + _UPGRADE_2
        elif version == 2:
            statements = _UPGRADE_2
        else:
            statements = ()
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version: 0 for a file without the store's tables."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bounce_schema'"
    ).fetchone()
    row = conn.execute("SELECT max(version) FROM bounce_schema").fetchone() if exists else None
    version = int(row[0]) if row and row[0] is not None else 0
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"SQLite bounce store {path}: its schema version {version} is newer "
            f"than this bounce-middleware understands ({SCHEMA_VERSION}); upgrade it"
        )
    return version
