"""A small Pyramid app showing bounce-middleware: users, login, an address page, the notice.

Install it (``pip install -e examples/pyramid_app``) and run ``pserve
development.ini http_port=6543`` (any free port: the ``.ini`` fixes none) from
its directory. The ``.ini`` pipeline puts the ``egg:bounce-middleware#bounce``
filter in front of the app (found as ``egg:bounce-pyramid-example``), and
``config.include("bounce_middleware.adapters.pyramid")`` reads the ``bounce.*``
settings. Database sessions follow Pyramid's SQLAlchemy cookiecutter: one
``sessionmaker`` in ``registry["dbsession_factory"]``, a ``request.dbsession``
joined to ``pyramid_tm``'s transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from html import escape
from typing import Any

import sqlalchemy as sa
import zope.sqlalchemy
from pyramid.authentication import SessionAuthenticationHelper
from pyramid.config import Configurator
from pyramid.csrf import get_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.response import Response
from pyramid.security import Allowed, Denied, forget, remember
from pyramid.session import SignedCookieSessionFactory
from sqlalchemy import orm

from bounce_middleware.adapters.sqlalchemy import create_all

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

    def set_password(self, password: str) -> None:
        """Store a salted scrypt hash of ``password``."""
        salt = secrets.token_bytes(16)
        self.password_hash = salt.hex() + ":" + _scrypt(password, salt).hex()

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches, compared in constant time."""
        salt, _, digest = self.password_hash.partition(":")
        return hmac.compare_digest(_scrypt(password, bytes.fromhex(salt)).hex(), digest)


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)


class SecurityPolicy:
    """Pyramid 2 security policy: the user id in the session, the user as identity."""

    def __init__(self) -> None:
        self.helper = SessionAuthenticationHelper()

    def identity(self, request: Any) -> User | None:
        """The logged-in :class:`User`, loaded once per request."""
        userid = self.helper.authenticated_userid(request)
        if userid is None:
            return None
        user: User | None = request.dbsession.get(User, int(userid))
        return user

    def authenticated_userid(self, request: Any) -> str | None:
        """The logged-in user's id as a string."""
        user = request.identity
        return None if user is None else str(user.id)

    def permits(self, request: Any, context: Any, permission: str) -> Any:
        """Logged-in users may manage their own account; nothing else is protected."""
        if permission == "account" and request.identity is None:
            return Denied("log in first")
        return Allowed("allowed")

    def remember(self, request: Any, userid: str, **kw: Any) -> list[tuple[str, str]]:
        """Log in: keep the id in the session."""
        headers: list[tuple[str, str]] = self.helper.remember(request, userid, **kw)
        return headers

    def forget(self, request: Any, **kw: Any) -> list[tuple[str, str]]:
        """Log out."""
        headers: list[tuple[str, str]] = self.helper.forget(request, **kw)
        return headers


def dbsession(request: Any) -> orm.Session:
    """``request.dbsession``: committed or aborted with the request by pyramid_tm."""
    session: orm.Session = request.registry["dbsession_factory"]()
    zope.sqlalchemy.register(session, transaction_manager=request.tm)
    return session


def page(request: Any, title: str, body: str) -> Response:
    """An HTML page with the flash messages (the bounce notice among them) on top."""
    notices = "".join(
        f'<p class="flash {queue or "info"}">{escape(str(message))}</p>'
        for queue in ("warning", "")
        for message in request.session.pop_flash(queue)
    )
    user = request.identity
    nav = (
        f'{escape(user.name)} &lt;{escape(user.email)}&gt; · <a href="/account">address</a> · '
        f'<form id="logout" method="post" action="/logout" style="display:inline">{_csrf(request)}'
        "<button>log out</button></form>"
        if user is not None
        else '<a href="/login">log in</a>'
    )
    html = (
        f"<!doctype html><title>{escape(title)}</title><nav>{nav}</nav>{notices}"
        f"<h1>{escape(title)}</h1>{body}"
    )
    return Response(html, content_type="text/html", charset="utf-8")


def _csrf(request: Any) -> str:
    return f'<input type="hidden" name="csrf_token" value="{escape(get_csrf_token(request))}">'


def home(request: Any) -> Response:
    """The front page."""
    return page(request, "Home", "<p>bounce-middleware Pyramid example.</p>")


def login(request: Any) -> Response:
    """GET: the form; POST: check the password and log in."""
    error = ""
    if request.method == "POST":
        name = request.POST.get("name", "")
        user = request.dbsession.scalar(sa.select(User).where(User.name == name))
        if user is not None and user.check_password(request.POST.get("password", "")):
            headers = remember(request, str(user.id))
            return HTTPSeeOther(location="/", headers=headers)
        error = '<p class="error">Wrong name or password.</p>'
    form = (
        f'{error}<form id="login" method="post" action="/login">{_csrf(request)}'
        '<label>Name <input name="name"></label> '
        '<label>Password <input name="password" type="password"></label> '
        "<button>Log in</button></form>"
    )
    return page(request, "Log in", form)


def logout(request: Any) -> Response:
    """Log out and go home."""
    return HTTPSeeOther(location="/", headers=forget(request))


def account(request: Any) -> Response:
    """GET: the address form; POST: change the address."""
    user = request.identity
    if request.method == "POST":
        email = request.POST.get("email", "").strip()
        if "@" in email:
            user.email = email
            request.session.flash(f"Your address is now {email}.")
            return HTTPSeeOther(location="/")
    form = (
        f'<form id="account" method="post" action="/account">{_csrf(request)}'
        f'<label>E-mail <input name="email" value="{escape(user.email)}"></label> '
        "<button>Save</button></form>"
    )
    return page(request, "Your address", form)


def forbidden(request: Any) -> Response:
    """Anonymous visitors of a protected page are sent to the login form."""
    return HTTPSeeOther(location="/login")


def make_config(settings: Mapping[str, Any]) -> Configurator:
    """The app's configuration; :func:`main` makes it a WSGI app."""
    config = Configurator(settings=dict(settings))
    config.set_session_factory(SignedCookieSessionFactory(settings["session.secret"]))
    config.set_security_policy(SecurityPolicy())
    config.set_default_csrf_options(require_csrf=True)
    config.include("pyramid_tm")
    engine = sa.engine_from_config(dict(settings), "sqlalchemy.")
    config.registry["dbsession_factory"] = orm.sessionmaker(bind=engine)
    config.add_request_method(dbsession, reify=True)
    config.include("bounce_middleware.adapters.pyramid")
    config.add_route("home", "/")
    config.add_route("login", "/login")
    config.add_route("logout", "/logout")
    config.add_route("account", "/account")
    config.add_view(home, route_name="home")
    config.add_view(login, route_name="login")
    config.add_view(logout, route_name="logout", request_method="POST")
    config.add_view(account, route_name="account", permission="account")
    config.add_forbidden_view(forbidden)
    setup_database(engine)
    return config


def setup_database(engine: sa.Engine) -> None:
    """Create the tables (the app's and bounce-middleware's) and the demo users."""
    Base.metadata.create_all(engine)
    create_all(engine)
    with orm.Session(engine) as session, session.begin():
        if session.scalar(sa.select(sa.func.count()).select_from(User)) == 0:
            for name, email, password in DEMO_USERS:
                user = User(name=name, email=email)
                user.set_password(password)
                session.add(user)


def main(global_config: Mapping[str, Any], **settings: Any) -> Any:
    """The PasteDeploy app factory (``use = egg:bounce-pyramid-example``)."""
    return make_config(settings).make_wsgi_app()


__all__ = ["User", "main", "make_config"]
