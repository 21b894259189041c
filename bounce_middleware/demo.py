"""The demo site behind ``bounce-middleware demo``: a few users, and who has a bounce notice.

Plain WSGI and WebOb, a user table in SQLite (:mod:`bounce_middleware.demo_users`),
and one bounce handler, :meth:`Users.flag_bounced`: a small, complete example of
writing a handler.
The page lists the users, the notice of any user whose address bounced, and
the webhook events the store recorded; changing an address clears its notice,
as the framework adapters do. Every provider has a route
(:mod:`bounce_middleware.demo_routes`), and one handler serves them all.

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
from collections.abc import Iterable, Mapping
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from webob import Request, Response

from .demo_routes import DEMO_PATHS, DEMO_USER, demo_routes
from .demo_users import SEED_USERS, User, Users
from .errors import ConfigurationError
from .middleware import BounceMiddleware
from .model import PERMANENT_KINDS
from .store import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "BOUNCE_PATH",
    "DB_ENV",
    "DEFAULT_DB",
    "DEMO_PATHS",
    "DEMO_USER",
    "SEED_USERS",
    "DemoSite",
    "User",
    "Users",
    "database_path",
    "make_app",
]

#: The Postmark route (the demo's first, and its only one before the other providers).
BOUNCE_PATH = DEMO_PATHS["postmark"]
#: The demo's database file, relative to the current directory, unless $BOUNCE_DEMO_DB names one.
DEFAULT_DB = "bounce-demo.sqlite3"
DB_ENV = "BOUNCE_DEMO_DB"
_USER_EMAIL_PATH = re.compile(r"/users/(\d{1,9})/email")  # bounded: SQLite ints are 64-bit
# Deliberately loose: the point is to catch typos, not to validate RFC 5322.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class DemoSite:
    """The WSGI app: the user list at ``/`` and the change-address form.

    ``routes`` (path -> provider name) are listed on the page: the webhook
    routes of the middleware around it; ``unserved`` (provider name -> why)
    the providers it lacks.
    """

    def __init__(
        self,
        users: Users,
        store: Store | None = None,
        routes: Mapping[str, str] | None = None,
        unserved: Mapping[str, str] | None = None,
    ) -> None:
        self.users = users
        self.store = store
        self.routes = dict(routes or {})
        self.unserved = dict(unserved or {})

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
                    f"{_e(_sentence(user.notice_description))} Please check the address.</td>"
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
        if self.routes:
            items = "".join(
                f"<li><code>{_e(path)}</code> {_e(name)}</li>" for path, name in self.routes.items()
            )
            items += "".join(
                f"<li>{_e(name)}: not served, {_e(why)}</li>" for name, why in self.unserved.items()
            )
            page += f"<h2>Webhook routes</h2><ul>{items}</ul>"
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
    mailgun_signing_key: str | None = None,
    store: Store | None = None,
) -> BounceMiddleware:
    """The demo site wrapped by the middleware; users and bounces share one SQLite file.

    It has a route for each provider (:func:`~bounce_middleware.demo_routes.demo_routes`):
    Postmark's checks ``credentials``, Mailgun's ``mailgun_signing_key``.
    Called with no arguments, as ``bounce-middleware replay --app
    bounce_middleware.demo:make_app`` does, it opens the demo's existing database
    (:func:`database_path`) and refuses to create one; the password and the
    signing key default to random ones, since replaying authenticates nothing.
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
    if mailgun_signing_key is None:
        mailgun_signing_key = secrets.token_hex(16)
    routes, unserved = demo_routes(credentials=credentials, mailgun_signing_key=mailgun_signing_key)
    users = Users(db_path)
    users.setup()
    if store is None:
        from .sqlite_store import SQLiteStore

        store = SQLiteStore(db_path)
        store.check()  # fail at start-up, not on the first webhook
    site = DemoSite(users, store, {path: p.name for path, p in routes.items()}, unserved)
    middleware = BounceMiddleware(site, routes=routes, store=store)
    # Only permanent failures mean the address is wrong; a soft bounce is recorded, not shown.
    # Named as before Users moved to demo_users: a demo database's records were completed
    # under this name, and `replay` would otherwise run the handler for them again.
    middleware.add_handler(
        users.flag_bounced, kinds=PERMANENT_KINDS, name="bounce_middleware.demo.Users.flag_bounced"
    )
    return middleware


def database_path() -> Path:
    """The demo's database: ``$BOUNCE_DEMO_DB``, else ``./bounce-demo.sqlite3``."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def _sentence(text: str | None) -> str:
    # Providers' descriptions end with a full stop, or not.
    text = (text or "").strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


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
            "<p>Reload to see new bounces.</p>"
            "</body></html>"
        ),
    )
    response.cache_control = "no-store"
    if allow is not None:
        response.headers["Allow"] = allow
    return response
