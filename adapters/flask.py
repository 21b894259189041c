"""Flask integration: an extension that wraps ``app.wsgi_app`` in the middleware.

::

    db = SQLAlchemy(model_class=Base)
    bounces = BounceExtension(db=db, user_model=User)

    def create_app():
        app = Flask(__name__)
        app.config.from_mapping(BOUNCE_PATH="/postmark/bounce",
                                BOUNCE_CREDENTIALS=["postmark:s3cret"])
        db.init_app(app)
        bounces.init_app(app)
        return app
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    import flask
except ImportError as exc:  # pragma: no cover - depends on the installation
    from bounce_middleware.errors import ImproperlyInstalled

    raise ImproperlyInstalled("flask", "Flask") from exc

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import Handler, HandlerFunc, make_handler
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.settings import as_bool, as_kinds, parse_settings, resolve

from .sqlalchemy import (
    DEFAULT_NOTICE,
    DEFAULT_NOTIFY_KINDS,
    SQLAlchemyStore,
    UserBounceHandler,
    mark_shown,
    pending_notice,
    session_scope,
)

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

__all__ = ["EXTENSION_KEY", "BounceExtension", "BounceState", "UserLoader", "read_config"]

logger = logging.getLogger("bounce_middleware")

#: The key of this extension's state in ``app.extensions``.
EXTENSION_KEY = "bounce_middleware"

#: Returns ``(user id, current e-mail address)`` of the logged-in user, or None.
UserLoader = Callable[[], "tuple[object, str] | None"]

_PREFIX = "BOUNCE_"

# The adapter's own keys (after ``BOUNCE_``), read by the same settings reader.
_FLASK_KEYS: Mapping[str, Callable[[Any], Any]] = {
    "notify_kinds": as_kinds,
    "notice": as_bool,
    "notice_message": str,
    "notice_category": str,
    "user_loader": resolve,
}


@dataclass
class BounceState:
    """What :meth:`BounceExtension.init_app` set up for one app (``app.extensions``)."""

    middleware: BounceMiddleware
    user_handler: UserBounceHandler | None
    notice_sessions: Callable[[], orm.Session] | None
    user_loader: UserLoader | None
    notice_message: str
    notice_category: str

    def add_handler(
        self,
        app: flask.Flask,
        func: HandlerFunc | Handler,
        *,
        kinds: Iterable[BounceKind | str] | None = None,
        name: str | None = None,
    ) -> Handler:
        """Register a handler that runs inside ``app.app_context()``."""
        return self.middleware.add_handler(
            _in_app_context(app, make_handler(func, kinds=kinds, name=name))
        )


class BounceExtension:
    """Receive bounce webhooks in a Flask app and tell users whose address bounced.

    ``BounceExtension(app)`` or ``ext = BounceExtension(); ext.init_app(app)``.
    Give ``db`` (a Flask-SQLAlchemy instance) and ``user_model`` to record a
    notice per affected user (:class:`~bounce_middleware.adapters.sqlalchemy.UserBounceHandler`,
    matching ``email_attribute`` case-insensitively), keep the de-duplication
    store in the same database, and flash each notice once to its user.
    ``handlers`` are added to every app; handlers always run inside
    ``app.app_context()``.

    Configuration keys read by :meth:`init_app`:

    - ``BOUNCE_PATH`` (required): the webhook path, e.g. ``/postmark/bounce``.
    - ``BOUNCE_CREDENTIALS`` (required): ``user:password`` entries (a list, or
      one whitespace-separated string); several allow rotation.
    - ``BOUNCE_HANDLERS``: more handlers, as callables or dotted names.
    - ``BOUNCE_STORE``: a store URL (``sqlite:///bounces.sqlite3``), dotted
      name or object. Default: the database of ``db`` when given, else none.
    - ``BOUNCE_PROVIDER``: default ``postmark``.
    - ``BOUNCE_MAX_BODY_SIZE``: bytes, default 1 MiB.
    - ``BOUNCE_REALM``, ``BOUNCE_RETRY_AFTER``, ``BOUNCE_LEASE_SECONDS``: as
      for :class:`~bounce_middleware.BounceMiddleware`.
    - ``BOUNCE_NOTIFY_KINDS``: the kinds that notify users; default ``hard``.
    - ``BOUNCE_NOTICE``: flash notices (default true when ``user_model`` is given).
    - ``BOUNCE_NOTICE_MESSAGE``: the wording, with ``{email}``,
      ``{description}`` (the provider's), ``{kind}`` and ``{type}``.
    - ``BOUNCE_NOTICE_CATEGORY``: the flash category; default ``warning``.
    - ``BOUNCE_USER_LOADER``: a callable (or dotted name) returning ``(user id,
      current address)`` of the logged-in user, or None; default reads
      Flask-Login's ``current_user``.

    Any other ``BOUNCE_*`` key is an error, so a typo does not go unnoticed.
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[Any] | None = None,
        email_attribute: str = "email",
        id_attribute: str | None = None,
        handlers: Iterable[HandlerFunc | Handler] = (),
        user_loader: UserLoader | None = None,
    ) -> None:
        if user_model is not None and db is None:
            raise ConfigurationError("user_model needs db (the Flask-SQLAlchemy instance)")
        self.db = db
        self.user_model = user_model
        self.email_attribute = email_attribute
        self.id_attribute = id_attribute
        self.handlers = [make_handler(h) for h in handlers]
        self.user_loader = user_loader
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Wrap ``app.wsgi_app`` with the middleware configured from ``BOUNCE_*`` keys."""
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError(
                "bounce-middleware is already registered on this Flask app; "
                "use the BounceExtension instance that registered it"
            )
        options = read_config(app.config)
        kinds = options.pop("notify_kinds", DEFAULT_NOTIFY_KINDS)
        notice = options.pop("notice", self.user_model is not None)
        notice_message = options.pop("notice_message", DEFAULT_NOTICE)
        notice_category = options.pop("notice_category", "warning")
        user_loader = options.pop("user_loader", None) or self.user_loader
        _check_template(notice_message)

        user_handler = None
        notice_sessions = None
        if self.db is not None:
            engine = _engine(self.db, app)
            options.setdefault("store", SQLAlchemyStore(engine))
            notice_sessions = orm.sessionmaker(bind=engine)
            if self.user_model is not None:
                user_handler = UserBounceHandler(
                    self.user_model,
                    self.email_attribute,
                    unit_of_work=functools.partial(session_scope, self.db.session),
                    kinds=kinds,
                    id_attribute=self.id_attribute,
                )
        if notice and user_handler is None:
            raise ConfigurationError("BOUNCE_NOTICE needs db and user_model on BounceExtension")
        if notice and user_loader is None:
            _require_flask_login()

        handlers = [*self.handlers, *options.pop("handlers", ())]
        if user_handler is not None:
            handlers.insert(0, make_handler(user_handler, kinds=user_handler.kinds))
        middleware = BounceMiddleware(
            app.wsgi_app,
            handlers=[_in_app_context(app, h) for h in handlers],
            **options,
        )
        state = BounceState(
            middleware=middleware,
            user_handler=user_handler,
            notice_sessions=notice_sessions,
            user_loader=user_loader,
            notice_message=notice_message,
            notice_category=notice_category,
        )
        app.extensions[EXTENSION_KEY] = state
        app.wsgi_app = middleware  # type: ignore[method-assign]
        if notice:
            app.before_request(functools.partial(_flash_notice, state))

    @staticmethod
    def state(app: flask.Flask | None = None) -> BounceState:
        """The state of ``app`` (default: the current app)."""
        target = app if app is not None else flask.current_app
        try:
            state: BounceState = target.extensions[EXTENSION_KEY]
        except KeyError:
            raise RuntimeError("BounceExtension.init_app was not called for this app") from None
        return state

    def add_handler(
        self,
        func: HandlerFunc | Handler,
        *,
        kinds: Iterable[BounceKind | str] | None = None,
        name: str | None = None,
        app: flask.Flask | None = None,
    ) -> Handler:
        """Register a handler for ``app`` (default: the current app), run in its app context."""
        target = app if app is not None else _current_app()
        return self.state(target).add_handler(target, func, kinds=kinds, name=name)


def read_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``BOUNCE_*`` keys of a Flask config, read by the core's settings reader.

    ``BOUNCE_MAX_BODY_SIZE`` is the reader's ``bounce.max_body_size``; error
    messages name the keys the way they are written in the Flask config.
    """
    flat = {
        "bounce." + key[len(_PREFIX) :].lower(): value
        for key, value in config.items()
        if key.startswith(_PREFIX)
    }
    try:
        return parse_settings(flat, "bounce.", extra=_FLASK_KEYS)
    except ConfigurationError as exc:
        message = re.sub(
            r"(?<![\w/:.])bounce\.([a-z_]+)", lambda m: _PREFIX + m[1].upper(), str(exc)
        )
        raise ConfigurationError(message) from None


def _current_app() -> flask.Flask:
    app: flask.Flask = flask.current_app._get_current_object()  # type: ignore[attr-defined]
    return app


def _engine(db: SQLAlchemy, app: flask.Flask) -> sa.Engine:
    if "sqlalchemy" not in app.extensions:
        raise ConfigurationError("call db.init_app(app) before BounceExtension.init_app(app)")
    with app.app_context():
        return db.engine


def _check_template(template: str) -> None:
    try:
        template.format_map({"email": "", "description": "", "kind": "", "type": ""})
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigurationError(
            f"BOUNCE_NOTICE_MESSAGE may use {{email}}, {{description}}, {{kind}}, {{type}}: {exc}"
        ) from None


def _in_app_context(app: flask.Flask, handler: Handler) -> Handler:
    """The same handler (same name, same kinds), called inside ``app.app_context()``.

    Leaving the context runs the app's teardown functions, which is where
    Flask-SQLAlchemy removes its session, whether the handler returned or raised.
    """
    func = handler.func

    def run(bounce: Bounce) -> object:
        with app.app_context():
            return func(bounce)

    return Handler(run, handler.name, handler.kinds)


def _require_flask_login() -> None:
    try:
        import flask_login  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "the bounce notice reads Flask-Login's current_user: install Flask-Login, "
            "or set BOUNCE_USER_LOADER (or BounceExtension(user_loader=...))"
        ) from exc


def _current_user(state: BounceState) -> tuple[object, str] | None:
    if state.user_loader is not None:
        return state.user_loader()
    from flask_login import current_user

    if not current_user or not current_user.is_authenticated:
        return None
    assert state.user_handler is not None
    return state.user_handler.identity(current_user)


def _flash_notice(state: BounceState) -> None:
    """``before_request``: flash the logged-in user's pending notice, once."""
    if flask.request.endpoint == "static" or state.notice_sessions is None:
        return
    user = _current_user(state)
    if user is None:
        return
    user_id, email = user
    try:
        with session_scope(state.notice_sessions) as session:
            notice = pending_notice(session, user_id, email)
            if notice is None or not mark_shown(session, notice):
                return
            text = notice.render(state.notice_message)
    except sa_exc.SQLAlchemyError:
        # A notice is not worth failing the user's page for; it stays pending.
        logger.exception("bounce notice lookup failed")
        return
    flask.flash(text, state.notice_category)
