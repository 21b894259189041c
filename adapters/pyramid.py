"""Pyramid integration: ``config.include``, a PasteDeploy filter, a user store, a one-time flash.

In the application factory::

    config.include("bounce_middleware.adapters.pyramid")   # reads bounce.* settings
    app = wrap(config)                                     # the Router inside the middleware

or, with the settings in ``[app:main]``, in a PasteDeploy pipeline (the filter
right before the app, so that it finds the app's registry)::

    [filter:bounce]
    use = egg:bounce-middleware#bounce

    [pipeline:main]
    pipeline = bounce myapp

Every setting is listed in :func:`includeme`'s docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bounce_middleware.errors import ConfigurationError, ImproperlyInstalled

try:
    import pyramid.config
    import pyramid.interfaces
    import pyramid.tweens
    import transaction
    import zope.sqlalchemy
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImproperlyInstalled("pyramid", "Pyramid") from exc

import sqlalchemy as sa
from sqlalchemy import orm

from bounce_middleware.handlers import Handler, HandlerFunc, make_handler
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

from .sqlalchemy import (
    DEFAULT_NOTICE,
    DEFAULT_NOTIFY_KINDS,
    SQLAlchemyStore,
    UnitOfWork,
    UserBounceHandler,
    mark_shown,
    pending_notice,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "REGISTRY_KEY",
    "FlashNotice",
    "PyramidBounce",
    "add_bounce_handler",
    "filter_app_factory",
    "includeme",
    "identity_user",
    "notice_tween_factory",
    "settings_keys",
    "transaction_scope",
    "wrap",
]

logger = logging.getLogger("bounce_middleware")

#: The registry key holding this app's :class:`PyramidBounce`.
REGISTRY_KEY = "bounce_middleware"
#: Where Pyramid's SQLAlchemy cookiecutter keeps its ``sessionmaker``.
SESSION_FACTORY_KEY = "dbsession_factory"
# After every action of the default order (set_session_factory, add_bounce_handler...),
# so the final check sees the whole configuration whatever the include order.
_FINISH_ORDER = pyramid.interfaces.PHASE3_CONFIG + 1

SessionFactory = Callable[[], orm.Session]
#: ``(request) -> (user id, current address)``, or None for an anonymous request.
UserLookup = Callable[[Any], tuple[object, str] | None]


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
        "notice_queue": str,
        "notice_user": dotted,
    }


@contextmanager
def transaction_scope(
    session_factory: SessionFactory,
    manager: Any = None,
) -> Iterator[orm.Session]:
    """A session joined to a transaction, committed on success and aborted on error.

    The same wiring as Pyramid's SQLAlchemy cookiecutter (``get_tm_session``):
    ``zope.sqlalchemy.register(session, transaction_manager=tm)``. Without
    ``manager``, a private explicit ``TransactionManager`` is used, so the work
    is independent of any request's ``request.tm``.
    """
    tm = manager if manager is not None else transaction.TransactionManager(explicit=True)
    with tm:
        session = session_factory()
        zope.sqlalchemy.register(session, transaction_manager=tm)
        yield session


def identity_user(
    request: Any, *, id_attribute: str, email_attribute: str
) -> tuple[object, str] | None:
    """The default user lookup: ``request.identity``'s id and address, or None if anonymous."""
    identity = request.identity
    if identity is None:
        return None
    email = getattr(identity, email_attribute, None)
    user_id = getattr(identity, id_attribute, None)
    if user_id is None or not isinstance(email, str):
        return None
    return user_id, email


@dataclass
class FlashNotice:
    """Shows a user's pending bounce notice once, through ``request.session.flash``."""

    unit_of_work: UnitOfWork
    user_of: UserLookup
    message: str = DEFAULT_NOTICE
    queue: str = ""

    def show(self, request: Any) -> bool:
        """Flash the pending notice for the request's user, if any; True when flashed.

        Only on GET requests: a POST may be the very form that changes the
        address, and a notice queued before that change would be shown after it.
        """
        if request.method != "GET":
            return False
        user = self.user_of(request)
        if user is None:
            return False
        user_id, email = user
        text = None
        try:
            with self.unit_of_work() as session:
                notice = pending_notice(session, user_id, email)
                if notice is not None and mark_shown(session, notice):
                    text = notice.render(self.message)
                    # The UPDATE bypasses the ORM's unit of work; without this the
                    # transaction would roll it back and show the notice again.
                    zope.sqlalchemy.mark_changed(session)
        except sa.exc.SQLAlchemyError:
            # A notice must never break the page; it stays pending for the next request.
            logger.exception("bounce notice: database error, not shown")
            return False
        if text is None:
            return False
        # Flashed only after the commit: a failed commit shows nothing, a shown one never twice.
        request.session.flash(text, self.queue)
        return True


@dataclass
class PyramidBounce:
    """One application's bounce configuration, kept at ``registry["bounce_middleware"]``."""

    options: dict[str, Any]
    handlers: list[Handler] = field(default_factory=list)
    store: Store | None = None
    notice: FlashNotice | None = None

    def wrap(self, app: WSGIApplication) -> BounceMiddleware:
        """``app`` inside a :class:`BounceMiddleware` with this configuration."""
        return BounceMiddleware(app, handlers=self.handlers, store=self.store, **self.options)


def includeme(config: Any) -> None:
    """Configure bounce handling from the app's ``bounce.*`` settings.

    Core settings (see :func:`bounce_middleware.settings.parse_settings`):

    ``bounce.path`` (required)
        The webhook path, e.g. ``/postmark/bounce``.
    ``bounce.credentials`` (required)
        ``user:password`` entries separated by whitespace or newlines; several
        allow rotation.
    ``bounce.handlers``
        Dotted names of extra handlers (callables taking a ``Bounce``).
    ``bounce.store``
        De-duplication store: ``sqlalchemy`` (the app's database, through the
        session factory below; the default when ``bounce.user_model`` is set),
        a URL (``sqlite:///path``, ``memory://``) or a dotted name.
    ``bounce.provider``, ``bounce.max_body_size``, ``bounce.realm``,
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
    ``bounce.notice_queue``
        The flash queue (default ``""``, Pyramid's default queue).
    ``bounce.notice_user``
        Dotted name of ``(request) -> (user_id, current_email) | None``;
        default: ``request.identity``'s id and email attributes.

    Adds the ``config.add_bounce_handler(func, kinds=None, name=None)``
    directive. Put the app in the middleware with :func:`wrap` or the
    ``egg:bounce-middleware#bounce`` PasteDeploy filter.

    Settings are checked here; what depends on the rest of the configuration
    (the session factories) is checked at commit, after every other action,
    and reported by Pyramid as a ``ConfigurationExecutionError`` wrapping a
    :class:`~bounce_middleware.ConfigurationError`.
    """
    keys = settings_keys(config)
    options = parse_settings(config.get_settings() or {}, "bounce.", extra=keys)
    settings_handlers: list[Handler] = options.pop("handlers", [])
    # What remains after taking the adapter's own keys out is BounceMiddleware's arguments.
    adapter = {key: options.pop(key) for key in keys if key in options}
    state = PyramidBounce(options)
    config.registry[REGISTRY_KEY] = state
    config.add_directive("add_bounce_handler", add_bounce_handler)

    def finish() -> None:
        _finish(state, config.registry, adapter, settings_handlers)

    config.action(("bounce_middleware", "finish"), finish, order=_FINISH_ORDER)
    if adapter.get("user_model") is not None and adapter.get("notice", True):
        # Innermost (over MAIN): inside pyramid_tm's transaction and after the
        # security policy is reachable, so request.identity may use request.dbsession.
        config.add_tween(
            "bounce_middleware.adapters.pyramid.notice_tween_factory", over=pyramid.tweens.MAIN
        )


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
    state: PyramidBounce,
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

        email_attribute = adapter.get("email_attribute", "email")
        user_store = UserBounceHandler(
            user_model,
            email_attribute,
            unit_of_work=unit_of_work,
            kinds=adapter.get("notify_kinds", DEFAULT_NOTIFY_KINDS),
            id_attribute=adapter.get("id_attribute"),
        )
        handlers.append(make_handler(user_store, kinds=user_store.kinds))
        if store is None:
            store = "sqlalchemy"
        if adapter.get("notice", True):
            if registry.queryUtility(pyramid.interfaces.ISessionFactory) is None:
                raise ConfigurationError(
                    "the bounce notice is flashed through request.session: call "
                    "config.set_session_factory(...), or set bounce.notice = false"
                )
            state.notice = FlashNotice(
                unit_of_work=unit_of_work,
                user_of=adapter.get("notice_user")
                or _default_user_lookup(user_model, email_attribute, adapter.get("id_attribute")),
                message=adapter.get("notice_message", DEFAULT_NOTICE),
                queue=adapter.get("notice_queue", ""),
            )
    if store == "sqlalchemy":
        assert factory is not None
        store = SQLAlchemyStore(factory)
    state.store = store
    state.handlers[:] = [*handlers, *settings_handlers, *directive_handlers]


def _default_user_lookup(
    user_model: type[Any], email_attribute: str, id_attribute: str | None
) -> UserLookup:
    if id_attribute is None:
        mapper = sa.inspect(user_model)
        id_attribute = mapper.get_property_by_column(mapper.primary_key[0]).key
    id_name: str = id_attribute

    def lookup(request: Any) -> tuple[object, str] | None:
        return identity_user(request, id_attribute=id_name, email_attribute=email_attribute)

    return lookup


def notice_tween_factory(handler: Callable[[Any], Any], registry: Any) -> Callable[[Any], Any]:
    """The tween that flashes a user's pending bounce notice once, before the view runs."""
    state: PyramidBounce | None = registry.get(REGISTRY_KEY)
    notice = state.notice if state is not None else None
    if notice is None:
        return handler
    show = notice.show

    def bounce_notice_tween(request: Any) -> Any:
        show(request)
        return handler(request)

    return bounce_notice_tween


def wrap(config_or_app: Any) -> BounceMiddleware:
    """The Pyramid app inside the bounce middleware, configured by ``config.include``.

    Takes the ``Configurator`` (its WSGI app is made here, which commits the
    configuration) or the app it made (``config.make_wsgi_app()``).
    """
    if isinstance(config_or_app, pyramid.config.Configurator):
        app = config_or_app.make_wsgi_app()
    else:
        app = config_or_app
    state = _state_of(app)
    if state is None:
        raise ConfigurationError(
            "wrap() needs a Pyramid app configured with "
            'config.include("bounce_middleware.adapters.pyramid")'
        )
    return state.wrap(app)


def _state_of(app: Any) -> PyramidBounce | None:
    registry = getattr(app, "registry", None)
    if registry is None or not hasattr(registry, "get"):
        return None
    state: PyramidBounce | None = registry.get(REGISTRY_KEY)
    return state


def filter_app_factory(
    app: WSGIApplication, global_conf: Mapping[str, Any], **local_conf: Any
) -> BounceMiddleware:
    """The PasteDeploy filter ``egg:bounce-middleware#bounce``.

    Where the wrapped app is a Pyramid app that ran ``config.include``, its
    ``bounce.*`` settings (in ``[app:...]``) configure the middleware and the
    filter section stays empty. Any other WSGI app is configured by ``bounce.*``
    keys in the filter section itself: the core keys only (path, credentials,
    handlers, store, ...), since the user store and notice need the include.
    Settings in both places are refused rather than merged.
    """
    unknown = sorted(k for k in local_conf if not k.startswith("bounce."))
    if unknown:
        raise ConfigurationError(
            f"[filter:bounce] takes bounce.* settings only; unknown: {', '.join(unknown)}"
        )
    state = _state_of(app)
    if state is not None:
        if local_conf:
            raise ConfigurationError(
                "the app already reads bounce.* settings through config.include; keep them "
                "in its [app:...] section and leave [filter:bounce] with only 'use ='"
            )
        return state.wrap(app)
    if not local_conf:
        raise ConfigurationError(
            "[filter:bounce] needs bounce.path and bounce.credentials (or wrap a Pyramid app "
            'that runs config.include("bounce_middleware.adapters.pyramid"))'
        )
    return BounceMiddleware(app, **parse_settings(local_conf, "bounce."))
