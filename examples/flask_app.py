"""A small Flask app showing bounce-middleware: users, login, an address page, the notice.

Run it from the repository root::

    flask --app examples/flask_app.py run

then log in as ann (password ``ann-password``) at http://127.0.0.1:5000/ and,
in another terminal, make Postmark "bounce" her address::

    bounce-middleware send http://127.0.0.1:5000/postmark/bounce \\
        --user postmark --password s3cret --email ann@example.com

Her next page shows the notice once. The terminal running the app prints the
library's log lines (``... accepted -> 200``), as the other examples do. Any
``BOUNCE_*`` key can be set from the environment with Flask's ``FLASK_``
prefix, e.g. ``FLASK_BOUNCE_POSTMARK_CREDENTIALS="postmark:another-secret"``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from typing import Any

import flask
import sqlalchemy as sa
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import orm
from werkzeug.security import check_password_hash, generate_password_hash

from bounce_middleware.adapters.flask import BounceExtension
from bounce_middleware.adapters.sqlalchemy import create_all

#: Seeded into an empty database: (name, address, password).
DEMO_USERS = [
    ("ann", "ann@example.com", "ann-password"),
    ("bob", "bob@example.com", "bob-password"),
]


class Base(orm.DeclarativeBase):
    """The app's declarative base."""


db = SQLAlchemy(model_class=Base)


class User(Base):
    """A user who can log in and change their address (what ``UserMixin`` gives, typed)."""

    __tablename__ = "users"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    email: orm.Mapped[str] = orm.mapped_column(sa.String(320))
    password_hash: orm.Mapped[str] = orm.mapped_column(sa.String(200))

    is_active = True
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        """The id Flask-Login keeps in the session."""
        return str(self.id)


# One extension object for any number of apps; its state lives in app.extensions.
bounces = BounceExtension(db=db, user_model=User, email_attribute="email")
login_manager = LoginManager()
login_manager.login_view = "login"

PAGE = """<!doctype html>
<title>bounce-middleware Flask example</title>
<p>{% if current_user.is_authenticated %}Logged in as {{ current_user.name }}
  &lt;{{ current_user.email }}&gt; |
  <a href="{{ url_for('change_email') }}">change address</a> |
  <form method=post action="{{ url_for('logout') }}" style="display:inline">
    <input type=hidden name=csrf_token value="{{ csrf_token() }}"><button>log out</button></form>
{% else %}<a href="{{ url_for('login') }}">log in</a>{% endif %}</p>
{% for category, message in get_flashed_messages(with_categories=true) %}
  <p class="flash {{ category }}"><strong>{{ category }}:</strong> {{ message }}</p>
{% endfor %}
{% if form %}<form id=page-form method=post>
  <input type=hidden name=csrf_token value="{{ csrf_token() }}">
  {% for name, label, type in form %}
    <p><label>{{ label }} <input name="{{ name }}" type="{{ type }}"></label></p>
  {% endfor %}
  <button>Submit</button>
</form>{% else %}<p>Welcome{% if current_user.is_authenticated %} back{% endif %}.</p>{% endif %}
"""


def render(form: list[tuple[str, str, str]] | None = None) -> str:
    """The one page template, with an optional form of (name, label, input type)."""
    return flask.render_template_string(PAGE, form=form)


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token: str = flask.session.setdefault("csrf_token", secrets.token_urlsafe(32))
    return token


def check_csrf() -> None:
    """Refuse a form post without the session's token (the bounce hook never gets here)."""
    if flask.request.method == "POST":
        sent = flask.request.form.get("csrf_token", "")
        expected = flask.session.get("csrf_token", "")
        if not expected or not hmac.compare_digest(sent, expected):
            flask.abort(400, "missing or wrong CSRF token")


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader."""
    return db.session.get(User, int(user_id))


def configure_logging() -> None:
    """Print the library's log lines (one per webhook: key, kind, answer) on stderr.

    Flask configures only its own logger; without this the ``bounce_middleware``
    logger's INFO lines would go nowhere. A deployment's own logging
    configuration (handlers on the root logger) is left alone.
    """
    if not logging.root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)-5.5s [%(name)s] %(message)s")
    logging.getLogger("bounce_middleware").setLevel(logging.INFO)


def create_app(config: dict[str, Any] | None = None) -> flask.Flask:
    """The application factory ``flask --app examples/flask_app.py run`` finds."""
    configure_logging()
    app = flask.Flask(__name__)
    app.config.from_mapping(
        # Demo values only: set FLASK_SECRET_KEY and FLASK_BOUNCE_POSTMARK_CREDENTIALS
        # in production.
        SECRET_KEY="dev-only-secret",
        SQLALCHEMY_DATABASE_URI="sqlite:///flask_app.sqlite3",  # in the instance folder
        # One route per provider; e.g. "/sendgrid/events": "sendgrid" would read
        # BOUNCE_SENDGRID_PUBLIC_KEY (the verification key SendGrid shows).
        BOUNCE_ROUTES={"/postmark/bounce": "postmark"},
        BOUNCE_POSTMARK_CREDENTIALS="postmark:s3cret",
        BOUNCE_NOTICE_CATEGORY="warning",
    )
    app.config.from_prefixed_env()
    app.config.update(config or {})
    if app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///flask_app.sqlite3":
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    db.init_app(app)  # before bounces.init_app: the store uses the app's engine
    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    bounces.init_app(app)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(check_csrf)
    register_views(app)

    with app.app_context():
        db.create_all()
        create_all(db.engine)  # the bounce tables; with Alembic, add their metadata instead
        if db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0:
            for name, email, password in DEMO_USERS:
                db.session.add(
                    User(name=name, email=email, password_hash=generate_password_hash(password))
                )
            db.session.commit()
    return app


def register_views(app: flask.Flask) -> None:
    """The pages: home, login, logout, change address."""

    @app.get("/")
    def home() -> ResponseReturnValue:
        return render()

    @app.route("/login", methods=["GET", "POST"])
    def login() -> ResponseReturnValue:
        if flask.request.method == "POST":
            name = flask.request.form.get("name", "")
            user = db.session.scalar(sa.select(User).where(User.name == name))
            if user is not None and check_password_hash(
                user.password_hash, flask.request.form.get("password", "")
            ):
                login_user(user)
                return flask.redirect(flask.url_for("home"))
            flask.flash("Wrong name or password.", "error")
        return render([("name", "Name", "text"), ("password", "Password", "password")])

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        logout_user()
        return flask.redirect(flask.url_for("home"))

    @app.route("/email", methods=["GET", "POST"])
    def change_email() -> ResponseReturnValue:
        # What @login_required does; Flask-Login's decorator is untyped.
        if not current_user.is_authenticated:
            response: ResponseReturnValue = login_manager.unauthorized()
            return response
        if flask.request.method == "POST":
            email = flask.request.form.get("email", "").strip()
            if "@" not in email:
                flask.flash("That does not look like an e-mail address.", "error")
            else:
                current_user.email = email
                db.session.commit()
                flask.flash(f"Your address is now {email}.", "info")
                return flask.redirect(flask.url_for("home"))
        return render([("email", "New address", "email")])


if __name__ == "__main__":
    create_app().run(debug=True)
