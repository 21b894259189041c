"""A small FastAPI app showing bounce-middleware under ASGI: users, login, the one-time notice.

Run it from the repository root::

    uvicorn main:app --app-dir examples/fastapi_app

then log in as ann (password ``ann-password``) at http://127.0.0.1:8000/ and,
in another terminal, make Postmark "bounce" her address::

    bounce-middleware send http://127.0.0.1:8000/postmark/bounce \\
        --user postmark --password s3cret --email ann@example.com

Her next page shows the notice once. The users, the bounce store and the
notices share one SQLite file (``BOUNCE_EXAMPLE_DB``, default
``fastapi_app.sqlite3``): the SQLAlchemy adapter's ``UserBounceHandler``
records its notices and its completion in one transaction, so each bounce is
applied exactly once. ``BOUNCE_POSTMARK_CREDENTIALS`` and
``BOUNCE_EXAMPLE_SECRET`` replace the demo's published secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import secrets
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import orm
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from bounce_middleware.adapters.sqlalchemy import (
    SQLAlchemyStore,
    UserBounceHandler,
    create_all,
    take_notice,
)
from bounce_middleware.asgi import BounceMiddleware
from bounce_middleware.handlers import make_handler
from bounce_middleware.providers import Postmark

#: Seeded into an empty database: (name, address, password).
DEMO_USERS = [
    ("ann", "ann@example.com", "ann-password"),
    ("bob", "bob@example.com", "bob-password"),
]


class Base(orm.DeclarativeBase):
    """The app's declarative base."""


class User(Base):
    """A user who can log in and change their address."""

    __tablename__ = "users"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    email: orm.Mapped[str] = orm.mapped_column(sa.String(320))
    password_hash: orm.Mapped[str] = orm.mapped_column(sa.String(200))


def hash_password(password: str, salt: str | None = None) -> str:
    """``salt$digest`` of a password (PBKDF2-SHA256, standard library only)."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), 200_000)
    return f"{salt}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    """True when ``password`` hashes to ``stored``, compared in constant time."""
    salt, _, _ = stored.partition("$")
    return hmac.compare_digest(stored, hash_password(password, salt))


def create_app() -> FastAPI:
    """The application: the pages, the session, and the bounce endpoint in front of them."""
    if not logging.root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)-5.5s [%(name)s] %(message)s")
    logging.getLogger("bounce_middleware").setLevel(logging.INFO)

    engine = sa.create_engine(
        f"sqlite:///{os.environ.get('BOUNCE_EXAMPLE_DB', 'fastapi_app.sqlite3')}"
    )
    Base.metadata.create_all(engine)
    create_all(engine)  # the bounce tables; with Alembic, add their metadata instead
    sessions = orm.sessionmaker(engine)
    with sessions.begin() as session:
        if session.scalar(sa.select(sa.func.count()).select_from(User)) == 0:
            session.add_all(
                User(name=n, email=e, password_hash=hash_password(p)) for n, e, p in DEMO_USERS
            )

    # Notices for hard bounces, written with their completion in one transaction.
    notify = UserBounceHandler(User, "email", bind=engine)
    app = FastAPI()
    register_pages(app, sessions, notify)
    # Starlette runs middleware added last first: the bounce route answers before the
    # session is even read. Demo values only: set both variables in production.
    app.add_middleware(SessionMiddleware, secret_key=os.environ.get("BOUNCE_EXAMPLE_SECRET", "dev"))
    app.add_middleware(
        BounceMiddleware,
        routes={
            "/postmark/bounce": Postmark(
                credentials=os.environ.get("BOUNCE_POSTMARK_CREDENTIALS", "postmark:s3cret").split()
            )
        },
        handlers=[make_handler(notify, kinds=notify.kinds)],
        store=SQLAlchemyStore(engine),
    )
    return app


def page(request: Request, body: str, notice: str | None = None) -> HTMLResponse:
    """The one page layout: who is logged in, the notice if any, then ``body``."""
    name = request.session.get("name")
    who = (
        f'Logged in as {html.escape(name)} | <a href="/email">change address</a> | '
        '<form method=post action="/logout" style="display:inline"><button>log out</button></form>'
        if name
        else '<a href="/login">log in</a>'
    )
    shown = f'<p class="notice warning">{html.escape(notice)}</p>' if notice else ""
    return HTMLResponse(f"<!doctype html><title>FastAPI example</title><p>{who}</p>{shown}{body}")


def form(*fields: tuple[str, str, str]) -> str:
    """A POST form of (name, label, input type)."""
    inputs = "".join(
        f"<p><label>{label} <input name={n} type={t}></label></p>" for n, label, t in fields
    )
    return f"<form method=post>{inputs}<button>Submit</button></form>"


async def posted(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST (no python-multipart needed)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


def register_pages(
    app: FastAPI, sessions: orm.sessionmaker[orm.Session], notify: UserBounceHandler
) -> None:
    """Home (with the notice), login, logout, change address."""

    def current(request: Request) -> User | None:
        user_id = request.session.get("user_id")
        with sessions() as session:
            return None if user_id is None else session.get(User, user_id)

    # The database and the password hash (PBKDF2: ~150 ms of CPU) are used from
    # Starlette's threads: the event loop, and every other request, never waits on them.
    def find_user(name: str) -> User | None:
        with sessions() as session:
            return session.scalar(sa.select(User).where(User.name == name))

    def authenticate(name: str, password: str) -> User | None:
        user = find_user(name)
        return user if user is not None and check_password(user.password_hash, password) else None

    def set_email(user_id: int, email: str) -> None:
        with sessions.begin() as session:
            session.execute(sa.update(User).where(User.id == user_id).values(email=email))

    def notice_for(request: Request) -> str | None:
        # The one-time notice: shown on a GET, marked shown in the same commit.
        user = current(request)
        if user is None:
            return None
        return take_notice(notify.unit_of_work, *notify.identity(user))

    @app.get("/")
    async def home(request: Request) -> Response:
        notice = await run_in_threadpool(notice_for, request)
        return page(request, "<p>Welcome.</p>", notice)

    @app.api_route("/login", methods=["GET", "POST"])
    async def login(request: Request) -> Response:
        if request.method == "POST":
            data = await posted(request)
            user = await run_in_threadpool(
                authenticate, data.get("name", ""), data.get("password", "")
            )
            if user is not None:
                request.session.update(user_id=user.id, name=user.name)
                return RedirectResponse("/", status_code=303)
        return page(request, form(("name", "Name", "text"), ("password", "Password", "password")))

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    @app.api_route("/email", methods=["GET", "POST"])
    async def change_email(request: Request) -> Response:
        user_id: Any = request.session.get("user_id")
        if user_id is None:
            return RedirectResponse("/login", status_code=303)
        if request.method == "POST":
            email = (await posted(request)).get("email", "").strip()
            if "@" in email:
                await run_in_threadpool(set_email, user_id, email)
                return RedirectResponse("/", status_code=303)
        return page(request, form(("email", "New address", "email")))


app = create_app()
