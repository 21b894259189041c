"""The Flask extension: configuration, the middleware around ``app.wsgi_app``, its state."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import flask
import sqlalchemy as sa

from bounce_middleware.adapters.sqlalchemy import (
    DEFAULT_NOTICE,
    SQLAlchemyStore,
    UserBounceHandler,
    session_scope,
)
from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import (
    DEFAULT_NOTIFY_KINDS,
    Handler,
    HandlerFunc,
    make_handler,
)
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.model import BounceKind
from bounce_middleware.settings import as_bool, as_kinds, parse_settings, resolve

from .notice import UserLookup, flash_notice, require_flask_login

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

__all__ = ["EXTENSION_KEY", "BounceExtension", "BounceState", "read_config"]

#: The key of this extension's state in ``app.extensions``.
EXTENSION_KEY = "bounce_middleware"

_PREFIX = "BOUNCE_"

# The adapter's own keys (after ``BOUNCE_``), read by the same settings reader.
_FLASK_KEYS: Mapping[str, Callable[[Any], Any]] = {
    "notify_kinds": as_kinds,
    "notice": as_bool,
    "notice_message": str,
    "notice_category": str,
    "user_lookup": resolve,
}

# Keys renamed for the one vocabulary of every adapter: old name -> new name.
_RENAMED_KEYS = {"BOUNCE_USER_LOADER": "BOUNCE_USER_LOOKUP"}


@dataclass
class BounceState:
    """What :meth:`BounceExtension.init_app` set up for one app (``app.extensions``).

    The same field names as Pyramid's ``BounceState``: ``middleware``,
    ``user_handler``, ``user_lookup`` (None: Flask-Login's ``current_user``),
    ``notice`` (whether the one-time flash is on), ``notice_message``,
    ``notice_category``.
    """

    middleware: BounceMiddleware
    user_handler: UserBounceHandler | None
    user_lookup: UserLookup | None
    notice: bool
    notice_message: str
    notice_category: str

    def add_handler(
        self,
        func: HandlerFunc | Handler,
        *,
        kinds: Iterable[BounceKind | str] | None = None,
        name: str | None = None,
    ) -> Handler:
        """Register a handler; it runs inside the app context of each delivery."""
        return self.middleware.add_handler(func, kinds=kinds, name=name)


class BounceExtension:
    """Receive bounce webhooks in a Flask app and tell users whose address bounced.

    ``BounceExtension(app)`` or ``ext = BounceExtension(); ext.init_app(app)``.
    Give ``db`` (a Flask-SQLAlchemy instance) and ``user_model`` to record a
    notice per affected user (:class:`~bounce_middleware.adapters.sqlalchemy.UserBounceHandler`,
    matching ``email_attribute`` case-insensitively), keep the de-duplication
    store in the same database, and flash each notice once to its user, on
    a GET request. ``handlers`` are added to every app. Each delivery of an
    event runs inside one ``app.app_context()`` (the middleware's ``scope``),
    so handlers can use ``current_app`` and ``db.session``; leaving it removes
    the session.

    Configuration keys read by :meth:`init_app`:

    - ``BOUNCE_ROUTES``: ``{path: provider}`` (or lines of ``path provider``);
      a provider is a name (``postmark``, ``sendgrid``, ``mailgun``,
      ``amazon_ses``), a dotted name or a provider object.
    - ``BOUNCE_<PROVIDER>_<OPTION>``: a named provider's options, e.g.
      ``BOUNCE_SENDGRID_PUBLIC_KEY``, ``BOUNCE_POSTMARK_CREDENTIALS`` (or
      ``BOUNCE_SENDGRID = {"PUBLIC_KEY": ...}``).
    - ``BOUNCE_PATH`` and ``BOUNCE_CREDENTIALS``: without ``BOUNCE_ROUTES``,
      version 1's one Postmark route (``user:password`` entries, a list or one
      whitespace-separated string; several allow rotation).
    - ``BOUNCE_HANDLERS``: more handlers, as callables or dotted names.
    - ``BOUNCE_STORE``: a store URL (``sqlite:///bounces.sqlite3``), dotted
      name or object. Default: the database of ``db`` when given, else none.
    - ``BOUNCE_MAX_BODY_SIZE``: bytes, default 1 MiB.
    - ``BOUNCE_REALM`` (of the ``BOUNCE_PATH`` route), ``BOUNCE_RETRY_AFTER``,
      ``BOUNCE_LEASE_SECONDS``: as for :class:`~bounce_middleware.BounceMiddleware`.
    - ``BOUNCE_NOTIFY_KINDS``: the kinds that notify users; default ``hard``.
    - ``BOUNCE_NOTICE``: flash notices (default true when ``user_model`` is given).
    - ``BOUNCE_NOTICE_MESSAGE``: the wording, with ``{email}``,
      ``{description}`` (the provider's), ``{kind}`` and ``{type}``.
    - ``BOUNCE_NOTICE_CATEGORY``: the flash category; default ``warning``.
    - ``BOUNCE_USER_LOOKUP``: a callable (or dotted name) returning ``(user id,
      current address)`` of the logged-in user, or None; default reads
      Flask-Login's ``current_user``. (``BOUNCE_USER_LOADER``, its name before
      version 0.2, still works with a ``DeprecationWarning``.)

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
        user_lookup: UserLookup | None = None,
        user_loader: UserLookup | None = None,
    ) -> None:
        if user_model is not None and db is None:
            raise ConfigurationError("user_model needs db (the Flask-SQLAlchemy instance)")
        if user_loader is not None:
            warnings.warn(
                "BounceExtension(user_loader=...) is now user_lookup=...",
                DeprecationWarning,
                stacklevel=2,
            )
            user_lookup = user_lookup or user_loader
        self.db = db
        self.user_model = user_model
        self.email_attribute = email_attribute
        self.id_attribute = id_attribute
        self.handlers = [make_handler(h) for h in handlers]
        self.user_lookup = user_lookup
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
        user_lookup = options.pop("user_lookup", None) or self.user_lookup
        _check_template(notice_message)

        user_handler = None
        if self.db is not None:
            options.setdefault("store", SQLAlchemyStore(_engine(self.db, app)))
            if self.user_model is not None:
                # A session of its own (the app's session class and binds), not the
                # scoped db.session: another handler of the same delivery may have left
                # that one with uncommitted writes, which must not commit with these.
                private = self.db.session.session_factory
                user_handler = UserBounceHandler(
                    self.user_model,
                    self.email_attribute,
                    unit_of_work=functools.partial(session_scope, private),
                    kinds=kinds,
                    id_attribute=self.id_attribute,
                )
        if notice and user_handler is None:
            raise ConfigurationError("BOUNCE_NOTICE needs db and user_model on BounceExtension")
        if notice and user_lookup is None:
            require_flask_login()

        handlers = [*self.handlers, *options.pop("handlers", ())]
        if user_handler is not None:
            handlers.insert(0, make_handler(user_handler, kinds=user_handler.kinds))
        # One app context per delivery, around the store and every handler: leaving it
        # runs the app's teardown functions (Flask-SQLAlchemy removes its session there).
        middleware = BounceMiddleware(
            app.wsgi_app, handlers=handlers, scope=app.app_context, **options
        )
        state = BounceState(
            middleware=middleware,
            user_handler=user_handler,
            user_lookup=user_lookup,
            notice=notice,
            notice_message=notice_message,
            notice_category=notice_category,
        )
        app.extensions[EXTENSION_KEY] = state
        app.wsgi_app = middleware  # type: ignore[method-assign]
        if notice:
            app.before_request(functools.partial(flash_notice, state))

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
        return self.state(target).add_handler(func, kinds=kinds, name=name)


def read_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``BOUNCE_*`` keys of a Flask config, read by the core's settings reader.

    Error messages name the keys as the Flask config writes them
    (``BOUNCE_MAX_BODY_SIZE``, ``BOUNCE_SENDGRID_PUBLIC_KEY``). A key renamed
    since version 0.1 is read under its new name, with a ``DeprecationWarning``.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(_PREFIX):
            continue
        new = _RENAMED_KEYS.get(key)
        if new is not None:
            warnings.warn(f"{key} is now {new}", DeprecationWarning, stacklevel=3)
            if new in config:
                continue  # the new key wins
            key = new
        flat[key] = value
    return parse_settings(flat, _PREFIX, extra=_FLASK_KEYS, spell=_spell)


def _spell(key: str) -> str:
    # A provider's option arrives as "sendgrid.public_key": BOUNCE_SENDGRID_PUBLIC_KEY.
    return _PREFIX + key.upper().replace(".", "_")


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
