"""The benchmark database: created once per run, with 10,000 users.

Every database row (5, 6, 7) and the HTTP run use the file this builds.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

USERS = 10_000

#: The one Basic credential every webhook row and the HTTP run use.
WEBHOOK_USER = "postmark"
WEBHOOK_PASSWORD = "s3cret"
#: The Mailgun HTTP webhook signing key of the provider rows (both receivers are given it).
MAILGUN_SIGNING_KEY = "key-benchmark-not-secret"


def user_email(number: int) -> str:
    """The address of user ``number`` (0 <= number < USERS)."""
    return f"user{number:05d}@example.com"


def create_database(path: Path, *, users: int = USERS, email_index: bool = True) -> None:
    """Build a fresh database file at ``path``: migrations, users, and WAL mode.

    Django must be set up with ``BOUNCE_BENCH_DB`` pointing at ``path``.
    ``email_index`` adds the indexes a project that looks users up by address
    case-insensitively needs on SQLite: ``NOCASE`` for ``email__iexact`` (rows 5
    and 6: ``LIKE`` uses no other), and ``bounce_fold(email)`` for the adapter's
    Unicode-folded lookup (row 7; the function Django registers on every
    connection). Without them each lookup scans all users.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connections

    if Path(os.environ["BOUNCE_BENCH_DB"]).resolve() != path.resolve():
        raise RuntimeError("BOUNCE_BENCH_DB must name the file being created")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    # WAL is a property of the file, kept by every later connection.
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    call_command("migrate", verbosity=0, interactive=False)
    user_model = get_user_model()
    # One hash shared by all: hashing 10,000 passwords would only slow the setup.
    password = make_password("not-used")
    user_model._default_manager.bulk_create(
        [
            user_model(username=f"user{n:05d}", email=user_email(n), password=password)
            for n in range(users)
        ],
        batch_size=1000,
    )
    if email_index:
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "CREATE INDEX bench_user_email_nocase ON auth_user (email COLLATE NOCASE)"
            )
            cursor.execute("CREATE INDEX bench_user_email_folded ON auth_user (bounce_fold(email))")
    connections.close_all()
