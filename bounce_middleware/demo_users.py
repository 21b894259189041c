"""The demo's users: a SQLite table, and the bounce handler that gives them notices.

:meth:`Users.flag_bounced` is the demo's one handler, for every provider: a
small, complete example of writing one (idempotent, keyed by the address).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .model import Bounce, fold_address

SEED_USERS = [
    ("Ann Archer", "ann@example.com"),
    ("Bob Baker", "bob@example.com"),
    ("Chloé Côté", "chloe@example.com"),
    ("Dara Diallo", "dara@example.com"),
    ("Emil Eriksen", "emil@example.com"),
    ("Fatima Farah", "fatima@example.com"),
    ("Gus Green", "gus@example.com"),
    ("Hana Hoshino", "hana@example.com"),
    ("Ivo Ivanov", "ivo@example.com"),
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS demo_notices (
    user_id INTEGER PRIMARY KEY REFERENCES demo_users (id),
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    bounced_at TEXT NOT NULL,
    event_key TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class User:
    """A user row, with its bounce notice if it has one."""

    id: int
    name: str
    email: str
    notice_kind: str | None = None
    notice_description: str | None = None
    notice_at: str | None = None


class Users:
    """The demo's user table: one SQLite connection per call, so any thread may use it."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        # SQLite's lower() folds ASCII only: compare addresses as the library does everywhere.
        db.create_function("bounce_fold", 1, fold_address, deterministic=True)
        try:
            with db:  # one transaction: commit, or roll back on error
                yield db
        finally:
            db.close()

    def setup(self) -> None:
        """Create the tables and, the first time, the demo users."""
        with self._db() as db:
            db.executescript(_SCHEMA)
            if db.execute("SELECT count(*) FROM demo_users").fetchone()[0] == 0:
                db.executemany("INSERT INTO demo_users (name, email) VALUES (?, ?)", SEED_USERS)

    def all(self) -> list[User]:
        """Every user with their notice, in id order."""
        with self._db() as db:
            rows = db.execute(
                "SELECT u.id, u.name, u.email, n.kind, n.description, n.bounced_at"
                " FROM demo_users u LEFT JOIN demo_notices n"
                # the notice shows only while the address is the one that bounced
                " ON n.user_id = u.id AND bounce_fold(n.email) = bounce_fold(u.email)"
                " ORDER BY u.id"
            ).fetchall()
        return [User(*row) for row in rows]

    def flag_bounced(self, bounce: Bounce) -> None:
        """The bounce handler: give every user whose current address bounced a notice.

        Idempotent, as handlers should be: a user has at most one notice, and a
        redelivery of the same event rewrites it with the same values.
        """
        when = bounce.bounced_at or datetime.now(UTC)
        try:
            shown = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        except (OverflowError, ValueError):  # e.g. 9999-12-31T23:59:59-14:00 has no UTC
            shown = f"{when:%Y-%m-%d %H:%M %z}"
        with self._db() as db:
            db.execute(
                "INSERT INTO demo_notices"
                " (user_id, email, kind, description, bounced_at, event_key)"
                " SELECT id, email, ?, ?, ?, ? FROM demo_users WHERE bounce_fold(email) = ?"
                " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email,"
                " kind = excluded.kind, description = excluded.description,"
                " bounced_at = excluded.bounced_at, event_key = excluded.event_key",
                (
                    bounce.kind.value,
                    # Not every provider describes a bounce: the SMTP reply says most then.
                    bounce.description or bounce.details or bounce.name or bounce.type,
                    shown,
                    bounce.key,
                    fold_address(bounce.email),
                ),
            )

    def change_email(self, user_id: int, email: str) -> bool:
        """Set a user's address and clear their notice; False if there is no such user."""
        with self._db() as db:
            changed = db.execute(
                "UPDATE demo_users SET email = ? WHERE id = ?", (email, user_id)
            ).rowcount
            db.execute("DELETE FROM demo_notices WHERE user_id = ?", (user_id,))
        return changed == 1
