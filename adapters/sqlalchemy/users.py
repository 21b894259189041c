"""UserBounceHandler: a notice for every user whose address bounced, applied exactly once."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import DEFAULT_NOTIFY_KINDS, Delivery
from bounce_middleware.model import Bounce, BounceKind, fold_address
from bounce_middleware.store import storable, unavailable

from .sessions import UnitOfWork, dialect_of, insert_missing, session_factory, session_scope
from .store import SQLAlchemyStore
from .tables import Notice, now

__all__ = ["UserBounceHandler", "address_matches"]

#: The SQL function registered on SQLite connections: ``fold_address`` in SQL.
FOLD_FUNCTION = "bounce_fold"


class UserBounceHandler:
    """A handler that records a :class:`~.tables.Notice` for every user whose address bounced.

    ``user_model`` is the app's mapped user class, ``email_attribute`` the name
    of its address attribute (matched case-insensitively, Unicode-aware: see
    :func:`address_matches`), ``id_attribute`` the attribute identifying a user
    (default: the single-column primary key). ``unit_of_work`` gives the
    session to use and commits it: by default :func:`~.sessions.session_scope`
    over ``sessionmaker(bind=bind)``; Flask passes one over the app's sessions,
    Pyramid one committing through ``transaction``. ``kinds`` are the kinds
    that notify (default: the core's ``DEFAULT_NOTIFY_KINDS``, hard bounces);
    other bounces and unknown addresses are ignored.

    Transactional: the middleware calls it as ``handler(bounce, delivery)``.
    When the delivery's store is a :class:`SQLAlchemyStore` on the same
    database, the handler records its own completion in its unit of work, so
    the notices and the completion commit together: the handler is applied
    exactly once. Called as ``handler(bounce)``, it only writes the notices
    (one per event and user, so a redelivery adds nothing).

    Register it with ``middleware.add_handler(handler, kinds=handler.kinds)``.
    """

    # The recorded completion name (module.qualname) predates this package: keep it.
    __module__ = "bounce_middleware.adapters.sqlalchemy"

    #: Called as ``handler(bounce, delivery)``; True means its completion is recorded.
    transactional = True

    def __init__(
        self,
        user_model: type[Any],
        email_attribute: str = "email",
        *,
        unit_of_work: UnitOfWork | None = None,
        bind: sa.Engine | Callable[[], orm.Session] | None = None,
        kinds: Collection[BounceKind | str] | None = None,
        id_attribute: str | None = None,
    ) -> None:
        self.user_model = user_model
        self.email_attribute = email_attribute
        self.email_column = _attribute(user_model, email_attribute)
        self.id_attribute = id_attribute or _primary_key_attribute(user_model)
        self.id_column = _attribute(user_model, self.id_attribute)
        if unit_of_work is None:
            if bind is None:
                raise ConfigurationError("UserBounceHandler needs unit_of_work=... or bind=...")
            factory = session_factory(bind)
            unit_of_work = lambda: session_scope(factory)  # noqa: E731
        self.unit_of_work = unit_of_work
        try:
            self.kinds = frozenset(
                BounceKind(k) for k in (DEFAULT_NOTIFY_KINDS if kinds is None else kinds)
            )
        except ValueError as exc:
            raise ConfigurationError(f"UserBounceHandler kinds: {exc}") from None

    def identity(self, user: object) -> tuple[object, str]:
        """``(user id, current address)`` of a loaded user, as ``pending_notice`` takes."""
        return getattr(user, self.id_attribute), getattr(user, self.email_attribute) or ""

    def __call__(self, bounce: Bounce, delivery: Delivery | None = None) -> bool:
        """Record a notice for each user with this address (skipping ones recorded before).

        Returns True when the completion was recorded in the same transaction. A
        database error, the commit's included, is raised as
        :class:`~bounce_middleware.errors.StoreUnavailable`, without the statement's
        parameters: the middleware logs it and answers 500, so the provider retries.
        """
        if bounce.kind not in self.kinds or not bounce.email:
            return False
        try:
            return self._apply(bounce, delivery)
        except sa_exc.SQLAlchemyError as exc:
            # The driver's message quotes the statement's parameters (addresses, the
            # bounce's description), and the core logs this exception with its traceback.
            raise unavailable("bounce user handler", exc) from None

    def _apply(self, bounce: Bounce, delivery: Delivery | None) -> bool:
        # The whole unit of work, its commit included (a failed commit raises here).
        store = delivery.store if delivery is not None else None
        recorded = False
        with self.unit_of_work() as session:
            email = storable(bounce.email)
            user_ids = session.scalars(
                sa.select(self.id_column).where(address_matches(session, self.email_column, email))
            )
            created = now()
            notices = [
                {
                    "user_id": storable(str(user_id)),
                    "email": email,
                    "email_key": fold_address(email),
                    "event_key": storable(bounce.key),
                    "kind": bounce.kind.value,
                    "type": storable(bounce.type),
                    "description": storable(bounce.description),
                    "created_at": created,
                }
                for user_id in sorted({str(uid) for uid in user_ids})
            ]
            insert_missing(session, Notice, notices, ["event_key", "user_id"])
            if (
                delivery is not None
                and isinstance(store, SQLAlchemyStore)
                and store.writes_through(session)
            ):
                store.complete(
                    delivery.claim, delivery.name, finished=delivery.finishes, session=session
                )
                recorded = True
        # Only now, after the commit: a failed commit raised instead.
        return recorded


def address_matches(session: orm.Session, column: Any, address: str) -> Any:
    """A SQL condition: ``column`` holds ``address``, case-insensitively, Unicode-aware.

    For the application's own user table, which has no folded column: on
    SQLite (whose ``lower()`` folds ASCII only) through the function
    ``bounce_fold`` (:func:`~bounce_middleware.model.fold_address`), registered
    on the session's connection; elsewhere ``lower()`` on both sides, which
    PostgreSQL applies to every letter under a UTF-8 locale.
    """
    if dialect_of(session) == "sqlite":
        register_fold(session)
        return sa.func.bounce_fold(column) == fold_address(address)
    return sa.func.lower(column) == sa.func.lower(address)


def register_fold(session: orm.Session) -> None:
    """Register ``bounce_fold(text)`` on the SQLite connection of ``session``."""
    raw: Any = session.connection().connection.dbapi_connection
    # Deterministic: SQLite may then use it in indexes on expressions and cache results.
    raw.create_function(FOLD_FUNCTION, 1, _fold, deterministic=True)


def _fold(value: object) -> str | None:
    return fold_address(value) if isinstance(value, str) else None


def _attribute(model: type[Any], name: str) -> Any:
    column = getattr(model, name, None)
    if column is None or not hasattr(column, "__clause_element__"):
        raise ConfigurationError(f"{model.__name__} has no mapped attribute {name!r}")
    return column


def _primary_key_attribute(model: type[Any]) -> str:
    mapper = sa.inspect(model, raiseerr=False)
    if mapper is None:
        raise ConfigurationError(f"{model!r} is not a mapped class")
    keys = mapper.primary_key
    if len(keys) != 1:
        raise ConfigurationError(
            f"{model.__name__} has a composite primary key; pass id_attribute=..."
        )
    return str(mapper.get_property_by_column(keys[0]).key)
