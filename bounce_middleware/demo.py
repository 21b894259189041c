"""The demo site behind ``bounce-middleware demo``: a few users, and who has a bounce notice.

Plain WSGI and WebOb, a user table in SQLite, and one bounce handler,
:meth:`Users.flag_bounced`: a small, complete example of writing a handler.
The page lists the users, the notice of any user whose address bounced, and
the webhook events the store recorded; changing an address clears its notice,
as the framework adapters do.

Users and bounces share one SQLite file, ``./bounce-demo.sqlite3`` by default
(``$BOUNCE_DEMO_DB`` or ``--db`` name another); delete ``bounce-demo.sqlite3*``
(the file and its ``-wal``/``-shm`` companions) to start over.

It is a demo: there is no login and no CSRF protection, so keep it on localhost.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from webob import Request, Response

from .errors import ConfigurationError
from .middleware import BounceMiddleware
from .model import PERMANENT_KINDS, Bounce, fold_address
from .store import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

BOUNCE_PATH = "/postmark/bounce"
DEMO_USER = "postmark"
#: The demo's database file, relative to the current directory, unless $BOUNCE_DEMO_DB names one.
DEFAULT_DB = "bounce-demo.sqlite3"
DB_ENV = "BOUNCE_DEMO_DB"
SEED_USERS = [
    ("Ann Archer", "ann@example.com"),
    ("Bob Baker", "bob@example.com"),
    ("Chloé Côté", "chloe@example.com"),
]
_USER_EMAIL_PATH = re.compile(r"/users/(\d{1,9})/email")  # bounded: SQLite ints are 64-bit
# Deliberately loose: the point is to catch typos, not to validate RFC 5322.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

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
                    bounce.description or bounce.name or bounce.type,
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


class DemoSite:
    """The WSGI app: the user list at ``/`` and the change-address form."""

    def __init__(self, users: Users, store: Store | None = None) -> None:
        self.users = users
        self.store = store

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        """Route one request."""
        if request.path_info == "/":
            if request.method not in ("GET", "HEAD"):
                return _page(405, "Method not allowed", "<p>Use GET.</p>", allow="GET, HEAD")
            return _page(200, "Users", self.render_users())
        match = _USER_EMAIL_PATH.fullmatch(request.path_info)
        if match is None:
            return _page(404, "Not found", '<p><a href="/">Back to the users</a></p>')
        if request.method != "POST":
            return _page(405, "Method not allowed", "<p>Use the form.</p>", allow="POST")
        field = request.POST.get("email", "")
        email = field.strip() if isinstance(field, str) else ""
        if len(email) > 254 or not _EMAIL.fullmatch(email):
            body = f'<p>{_e(email)} is not an e-mail address. <a href="/">Back</a></p>'
            return _page(400, "Not an e-mail address", body)
        if not self.users.change_email(int(match.group(1)), email):
            return _page(404, "No such user", '<p><a href="/">Back to the users</a></p>')
        return Response(status=303, location="/")

    def render_users(self) -> str:
        """The body of the main page."""
        rows = []
        for user in self.users.all():
            notice = "<td>-</td>"
            if user.notice_kind is not None:
                notice = (
                    f'<td class="notice">Mail to this address bounced '
                    f"({_e(user.notice_kind)}, {_e(user.notice_at)}): "
                    f"{_e(user.notice_description)} Please check the address.</td>"
                )
            rows.append(
                f"<tr><td>{_e(user.name)}</td><td>{_e(user.email)}</td>{notice}<td>"
                f'<form method="post" action="/users/{user.id}/email">'
                f'<input name="email" type="email" value="{_e(user.email)}" required> '
                "<button>Change address</button></form></td></tr>"
            )
        page = (
            "<table><tr><th>Name</th><th>E-mail</th><th>Bounce notice</th><th></th></tr>"
            + "".join(rows)
            + "</table>"
        )
        if self.store is not None:
            page += "<h2>Webhook events recorded</h2>" + self.render_events()
        return page

    def render_events(self) -> str:
        """The newest events in the store."""
        assert self.store is not None
        records = self.store.records(limit=10)
        if not records:
            return "<p>None yet.</p>"
        rows = "".join(
            f"<tr><td>{r.received_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}</td><td>{_e(r.key)}</td>"
            f"<td>{_e(r.type)}</td><td>{_e(r.kind.value)}</td><td>{_e(r.email)}</td>"
            f"<td>{'done' if r.finished else 'pending'}</td></tr>"
            for r in records
        )
        return (
            "<table><tr><th>Received (UTC)</th><th>Key</th><th>Type</th><th>Kind</th>"
            f"<th>E-mail</th><th>Handlers</th></tr>{rows}</table>"
        )


def make_app(
    db_path: str | Path | None = None,
    *,
    credentials: Iterable[str] | None = None,
    store: Store | None = None,
) -> BounceMiddleware:
    """The demo site wrapped by the middleware; users and bounces share one SQLite file.

    Called with no arguments, as ``bounce-middleware replay --app
    bounce_middleware.demo:make_app`` does, it opens the demo's existing database
    (:func:`database_path`) and refuses to create one; ``credentials`` default to
    a random password, since replaying needs none.
    """
    if db_path is None:
        db_path = database_path()
        if not db_path.is_file():
            raise ConfigurationError(
                f"no demo database at {db_path}: run `bounce-middleware demo` in this "
                f"directory first, or set {DB_ENV} to the file its --db named"
            )
    if credentials is None:
        credentials = [f"{DEMO_USER}:{secrets.token_urlsafe(16)}"]
    users = Users(db_path)
    users.setup()
    if store is None:
        from .sqlite_store import SQLiteStore

        store = SQLiteStore(db_path)
        store.check()  # fail at start-up, not on the first webhook
    middleware = BounceMiddleware(
        DemoSite(users, store), path=BOUNCE_PATH, credentials=credentials, store=store
    )
    # Only permanent failures mean the address is wrong; a soft bounce is recorded, not shown.
    middleware.add_handler(users.flag_bounced, kinds=PERMANENT_KINDS)
    return middleware


def database_path() -> Path:
    """The demo's database: ``$BOUNCE_DEMO_DB``, else ``./bounce-demo.sqlite3``."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(status: int, title: str, body: str, *, allow: str | None = None) -> Response:
    response = Response(
        status=status,
        content_type="text/html",
        charset="utf-8",
        text=(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)} - bounce-middleware demo</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2rem}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem}"
            ".notice{background:#fde2e1}</style></head><body>"
            f"<h1>{_e(title)}</h1>{body}"
            f"<p>Bounces are posted to <code>{BOUNCE_PATH}</code>; reload to see new ones.</p>"
            "</body></html>"
        ),
    )
    response.cache_control = "no-store"
    if allow is not None:
        response.headers["Allow"] = allow
    return response
