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

from .sessions import UnitOfWork, insert_missing, session_factory, session_scope
from .store import SQLAlchemyStore
from .tables import Notice, now

__all__ = ["UserBounceHandler", "address_matches", "folded"]

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
    exactly once. A delivery whose lease was taken over by another one rolls
    its unit of work back instead (``StoreUnavailable``, answered 500): the
    other delivery applies it. Called as ``handler(bounce)``, it only writes
    the notices (one per event and user, so a redelivery adds nothing).

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
        self.mapper = sa.inspect(user_model)
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
            condition = address_matches(session, self.email_column, email, mapper=self.mapper)
            user_ids = session.scalars(sa.select(self.id_column).where(condition))
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


def address_matches(session: orm.Session, column: Any, address: str, *, mapper: Any = None) -> Any:
    """A SQL condition: ``column`` holds ``address``, case-insensitively, Unicode-aware.

    ``address`` is folded here (:func:`~bounce_middleware.model.fold_address`);
    the column in SQL by :func:`folded`, on the database the column's mapper is
    bound to (``mapper``, default: the attribute's own), which need not be the
    session's default bind.
    """
    if mapper is None:
        mapper = getattr(column, "parent", None)
    connection = session.connection(bind_arguments={"mapper": mapper} if mapper else None)
    if connection.dialect.name == "sqlite":
        register_fold(connection)
    return folded(connection.dialect, column) == fold_address(address)


def folded(dialect: sa.Dialect, column: Any) -> Any:
    """``column`` folded in SQL, as close to ``fold_address`` as ``dialect`` allows.

    - SQLite: ``bounce_fold(column)``, which is ``fold_address`` itself
      (:func:`register_fold` must have run on the connection).
    - PostgreSQL 13 or later: ``lower(normalize(column, NFKC))``, then ``ß`` and
      ``ς`` replaced by ``ss`` and ``σ``. ``lower()`` follows the column's
      collation: Unicode-aware under a UTF-8 libc or ICU locale, ASCII only under
      ``COLLATE "C"``. What still folds differently from Python's NFKC +
      ``casefold()``, measured one code point at a time on PostgreSQL 15 under
      glibc 2.36's ``C.UTF-8`` (184 code points, all rare in addresses): ``İ``
      (Python ``i̇``, PostgreSQL ``i``); the letters Python folds into several
      characters, i.e. Greek letters with ypogegrammeni (``ᾳ`` -> ``αι``) and
      letters whose full folding is decomposed (``ǰ``, ``ΐ``, ``ΰ``, ``ẖ``,
      ``ᾶ``...); ``U+0345`` (-> ``ι``); Cherokee (Python folds to capitals);
      ``U+1C80``-``U+1C88`` (historic Cyrillic letter forms). An expression
      index on exactly this expression serves the lookup.
    - Older PostgreSQL and other databases: ``lower(column)``.
    """
    if dialect.name == "sqlite":
        return sa.func.bounce_fold(column)
    if dialect.name == "postgresql" and (dialect.server_version_info or (0,)) >= (13,):
        # Constants, not parameters, so that an expression index can match the query.
        lowered = sa.func.lower(sa.func.normalize(column, sa.literal_column("NFKC")))
        sharp_s = sa.func.replace(lowered, sa.literal_column("'ß'"), sa.literal_column("'ss'"))
        return sa.func.replace(sharp_s, sa.literal_column("'ς'"), sa.literal_column("'σ'"))
    return sa.func.lower(column)


def register_fold(connection: sa.Connection) -> None:
    """Register ``bounce_fold(text)`` on a SQLite connection, once per DB-API connection.

    Marked in the pool's per-connection ``info``, which a new DB-API connection
    starts without, so each delivery costs a dictionary look-up, not a call
    into SQLite.
    """
    pooled = connection.connection
    if pooled.info.get(FOLD_FUNCTION):
        return
    raw: Any = pooled.dbapi_connection
    # Deterministic: SQLite may then use it in indexes on expressions and cache results.
    raw.create_function(FOLD_FUNCTION, 1, _fold, deterministic=True)
    pooled.info[FOLD_FUNCTION] = True


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
