"""``config.include``: the ``bounce.*`` settings, the handler directive, the app's state."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyramid.interfaces
import pyramid.tweens

from bounce_middleware.adapters.sqlalchemy import DEFAULT_NOTICE, SQLAlchemyStore, UserBounceHandler
from bounce_middleware.adapters.sqlalchemy.sessions import SessionFactory
from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import DEFAULT_NOTIFY_KINDS, Handler, HandlerFunc, make_handler
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.settings import (
    Converter,
    as_bool,
    as_kinds,
    as_list,
    as_store,
    parse_settings,
)
from bounce_middleware.store import Store

from .notice import DEFAULT_NOTICE_CATEGORY, REGISTRY_KEY, UserLookup, transaction_scope

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["BounceState", "add_bounce_handler", "includeme", "settings_keys"]

#: Where Pyramid's SQLAlchemy cookiecutter keeps its ``sessionmaker``.
SESSION_FACTORY_KEY = "dbsession_factory"
# After every action of the default order (set_session_factory, add_bounce_handler...),
# so the final check sees the whole configuration whatever the include order.
_FINISH_ORDER = pyramid.interfaces.PHASE3_CONFIG + 1
# Settings renamed for the one vocabulary of every adapter: old name -> new name.
_RENAMED_SETTINGS = {
    "bounce.notice_user": "bounce.user_lookup",
    "bounce.notice_queue": "bounce.notice_category",
}
# The tween's dotted name, as apps listing `pyramid.tweens` in their .ini know it.
_TWEEN = "bounce_middleware.adapters.pyramid.notice_tween_factory"


def _store(value: Any) -> Store | str:
    # "sqlalchemy" means the app's own database, known only once the registry is complete.
    return "sqlalchemy" if value == "sqlalchemy" else as_store(value)


def settings_keys(config: Any) -> dict[str, Converter]:
    """The adapter's keys (and the core's ``handlers``/``store``, extended) with converters.

    Passed to the core's one reader as ``extra``; dotted names resolve through
    ``config.maybe_dotted``, like every Pyramid add-on's.
    """

    def dotted(value: Any) -> Any:
        try:
            return config.maybe_dotted(value)
        except ImportError as exc:
            # parse_settings names the key when a converter raises TypeError or ValueError.
            raise TypeError(f"cannot import {value!r}: {exc}") from None

    return {
        "handlers": lambda value: [make_handler(dotted(item)) for item in as_list(value)],
        "store": _store,
        "user_model": dotted,
        "email_attribute": str,
        "id_attribute": str,
        "session_factory": dotted,
        "notify_kinds": as_kinds,
        "notice": as_bool,
        "notice_message": str,
        "notice_category": str,
        "user_lookup": dotted,
    }


@dataclass
class BounceState:
    """One application's bounce configuration, kept at ``registry["bounce_middleware"]``.

    The fields Flask's ``BounceState`` has too, under the same names:
    ``middleware`` (here the one :meth:`wrap` built last, None before),
    ``user_handler``, ``user_lookup`` (None: ``request.identity``),
    ``notice`` (whether the one-time flash is on), ``notice_message`` and
    ``notice_category``. Filled in at commit, once every include has run.
    """

    #: ``BounceMiddleware``'s keyword arguments read from the settings.
    middleware_options: dict[str, Any]
    handlers: list[Handler] = field(default_factory=list)
    store: Store | None = None
    middleware: BounceMiddleware | None = None
    user_handler: UserBounceHandler | None = None
    user_lookup: UserLookup | None = None
    notice: bool = False
    notice_message: str = DEFAULT_NOTICE
    notice_category: str = DEFAULT_NOTICE_CATEGORY

    @property
    def options(self) -> dict[str, Any]:
        """Deprecated: ``middleware_options``, its name before version 0.2."""
        warnings.warn(
            "BounceState.options is now BounceState.middleware_options",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.middleware_options

    def wrap(self, app: WSGIApplication) -> BounceMiddleware:
        """``app`` inside a :class:`BounceMiddleware` with this configuration."""
        self.middleware = BounceMiddleware(
            app, handlers=self.handlers, store=self.store, **self.middleware_options
        )
        return self.middleware


def includeme(config: Any) -> None:
    """Configure bounce handling from the app's ``bounce.*`` settings.

    Core settings (see :func:`bounce_middleware.settings.parse_settings`):

    ``bounce.routes``
        Lines of ``path provider``: a provider name (``postmark``,
        ``sendgrid``, ``mailgun``, ``amazon_ses``) or a dotted name.
    ``bounce.<provider>.<option>``
        A named provider's options, e.g. ``bounce.postmark.credentials``,
        ``bounce.sendgrid.public_key`` (``bounce.sendgrid_public_key`` also works).
    ``bounce.path`` and ``bounce.credentials``
        Without ``bounce.routes``: version 1's one Postmark route
        (``user:password`` entries separated by whitespace or newlines;
        several allow rotation).
    ``bounce.handlers``
        Dotted names of extra handlers (callables taking a ``Bounce``).
    ``bounce.store``
        De-duplication store: ``sqlalchemy`` (the app's database, through the
        session factory below; the default when ``bounce.user_model`` is set),
        a URL (``sqlite:///path``, ``memory://``) or a dotted name.
    ``bounce.max_body_size``, ``bounce.realm`` (of the ``bounce.path`` route),
    ``bounce.retry_after``, ``bounce.lease_seconds``
        As for :class:`~bounce_middleware.BounceMiddleware`.

    User store and notice (all optional):

    ``bounce.user_model``
        Dotted name of the mapped user class; enables the user-store handler
        (a notice per user whose address bounced) and the one-time flash.
    ``bounce.email_attribute``
        The user's address attribute (default ``email``), matched case-insensitively.
    ``bounce.id_attribute``
        The attribute identifying a user (default: the primary key).
    ``bounce.session_factory``
        Dotted name of a ``sessionmaker`` (a plain one, not zope-registered);
        default ``registry["dbsession_factory"]``, as in Pyramid's
        SQLAlchemy cookiecutter. Sessions are committed through ``transaction``
        with ``zope.sqlalchemy``: a failing handler writes nothing and answers 500.
    ``bounce.notify_kinds``
        Kinds that notify a user (default ``hard``).
    ``bounce.notice``
        Show the one-time flash (default ``true``); needs a session factory
        (``config.set_session_factory``).
    ``bounce.notice_message``
        Its wording; ``{email}``, ``{description}``, ``{kind}`` and ``{type}``
        are filled in.
    ``bounce.notice_category``
        The flash queue (default ``""``, Pyramid's default queue, which
        ``request.session.pop_flash()`` reads).
    ``bounce.user_lookup``
        Dotted name of ``(request) -> (user_id, current_email) | None``;
        default: ``request.identity``'s id and email attributes.

    ``bounce.notice_queue`` and ``bounce.notice_user``, the names of the last
    two before version 0.2, still work with a ``DeprecationWarning``.

    Adds the ``config.add_bounce_handler(func, kinds=None, name=None)``
    directive. Put the app in the middleware with :func:`wrap` or the
    ``egg:bounce-middleware#bounce`` PasteDeploy filter.

    Settings are checked here; what depends on the rest of the configuration
    (the session factories) is checked at commit, after every other action,
    and reported by Pyramid as a ``ConfigurationExecutionError`` wrapping a
    :class:`~bounce_middleware.ConfigurationError`.
    """
    keys = settings_keys(config)
    options = parse_settings(_renamed(config.get_settings() or {}), "bounce.", extra=keys)
    settings_handlers: list[Handler] = options.pop("handlers", [])
    # What remains after taking the adapter's own keys out is BounceMiddleware's arguments.
    adapter = {key: options.pop(key) for key in keys if key in options}
    state = BounceState(options)
    config.registry[REGISTRY_KEY] = state
    config.add_directive("add_bounce_handler", add_bounce_handler)

    def finish() -> None:
        _finish(state, config.registry, adapter, settings_handlers)

    config.action(("bounce_middleware", "finish"), finish, order=_FINISH_ORDER)
    if adapter.get("user_model") is not None and adapter.get("notice", True):
        # Innermost (over MAIN): inside pyramid_tm's transaction and after the
        # security policy is reachable, so request.identity may use request.dbsession.
        config.add_tween(_TWEEN, over=pyramid.tweens.MAIN)


def _renamed(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings with keys renamed since version 0.1 under their new names (warned)."""
    result = dict(settings)
    for old, new in _RENAMED_SETTINGS.items():
        if old in result:
            warnings.warn(f"{old} is now {new}", DeprecationWarning, stacklevel=4)
            value = result.pop(old)
            result.setdefault(new, value)  # the new key wins
    return result


def add_bounce_handler(
    config: Any,
    func: HandlerFunc | str,
    kinds: Any = None,
    name: str | None = None,
) -> None:
    """Directive: register a handler (a callable or dotted name) for the bounce middleware.

    Two registrations under one name conflict at commit, as Pyramid's own directives do.
    """
    if isinstance(kinds, str):
        kinds = kinds.split()
    handler = make_handler(config.maybe_dotted(func), kinds=kinds, name=name)
    registry = config.registry

    def register() -> None:
        registry[REGISTRY_KEY].handlers.append(handler)

    config.action(("bounce_middleware.handler", handler.name), register)


def _finish(
    state: BounceState,
    registry: Any,
    adapter: dict[str, Any],
    settings_handlers: list[Handler],
) -> None:
    """Build the user store, the store and the notice once every include has run."""
    directive_handlers = list(state.handlers)
    user_model = adapter.get("user_model")
    store = adapter.get("store")
    factory: SessionFactory | None = None
    if user_model is not None or store == "sqlalchemy":
        factory = adapter.get("session_factory") or registry.get(SESSION_FACTORY_KEY)
        if factory is None:
            raise ConfigurationError(
                "bounce.user_model and bounce.store = sqlalchemy need a session factory: "
                f'set bounce.session_factory or registry["{SESSION_FACTORY_KEY}"]'
            )
    handlers = []
    if user_model is not None:
        assert factory is not None
        bound = factory

        def unit_of_work() -> Any:
            return transaction_scope(bound)

        user_handler = UserBounceHandler(
            user_model,
            adapter.get("email_attribute", "email"),
            unit_of_work=unit_of_work,
            kinds=adapter.get("notify_kinds", DEFAULT_NOTIFY_KINDS),
            id_attribute=adapter.get("id_attribute"),
        )
        handlers.append(make_handler(user_handler, kinds=user_handler.kinds))
        state.user_handler = user_handler
        if store is None:
            store = "sqlalchemy"
        if adapter.get("notice", True):
            if registry.queryUtility(pyramid.interfaces.ISessionFactory) is None:
                raise ConfigurationError(
                    "the bounce notice is flashed through request.session: call "
                    "config.set_session_factory(...), or set bounce.notice = false"
                )
            state.notice = True
    state.user_lookup = adapter.get("user_lookup")
    state.notice_message = adapter.get("notice_message", DEFAULT_NOTICE)
    state.notice_category = adapter.get("notice_category", DEFAULT_NOTICE_CATEGORY)
    if store == "sqlalchemy":
        assert factory is not None
        store = SQLAlchemyStore(factory)
    state.store = store
    state.handlers[:] = [*handlers, *settings_handlers, *directive_handlers]
