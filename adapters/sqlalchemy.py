"""SQLAlchemy 2.x support shared by the Flask and Pyramid adapters.

Framework-independent: plain SQLAlchemy sessions, Flask-SQLAlchemy and
Pyramid's ``transaction`` + ``zope.sqlalchemy`` sessions all work.

- :data:`metadata` holds this library's tables (``bounce_events``,
  ``bounce_event_handlers``, ``bounce_notices``) on a ``MetaData`` of its own,
  so they need none of the application's declarative base. Create them with
  :func:`create_all`, or with Alembic by listing this metadata in ``env.py``::

      from bounce_middleware.adapters.sqlalchemy import metadata as bounce_metadata
      target_metadata = [Base.metadata, bounce_metadata]   # then: alembic revision --autogenerate

- :class:`SQLAlchemyStore` is the de-duplication store (the
  :class:`~bounce_middleware.store.Store` protocol) in the application's
  database, shared by every process that uses it.
- :class:`UserBounceHandler` is the handler that records a :class:`Notice`
  for every user whose address bounced.
- :func:`pending_notice` and :func:`mark_shown` are what a framework's
  "show the notice once" hook needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import orm
except ImportError as exc:  # pragma: no cover - depends on the installation
    from bounce_middleware.errors import ImproperlyInstalled

    raise ImproperlyInstalled("sqlalchemy", "SQLAlchemy") from exc

from bounce_middleware.errors import ConfigurationError, StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState, Record, new_token

__all__ = [
    "DEFAULT_NOTICE",
    "DEFAULT_NOTIFY_KINDS",
    "BounceEvent",
    "CompletedHandler",
    "Notice",
    "SQLAlchemyStore",
    "UnitOfWork",
    "UserBounceHandler",
    "create_all",
    "mark_shown",
    "metadata",
    "pending_notice",
    "session_scope",
]

#: The kinds a user is told about by default. Only a hard bounce means "check
#: your address"; telling a spam complainer their mail bounced would be wrong.
DEFAULT_NOTIFY_KINDS: frozenset[BounceKind] = frozenset({BounceKind.HARD})

#: Default notice wording; ``{email}``, ``{description}``, ``{kind}`` and ``{type}``
#: are filled from the :class:`Notice`.
DEFAULT_NOTICE = (
    "We could not deliver e-mail to {email}: {description} "
    "Please check that your address is correct."
)

#: A zero-argument callable returning a context manager that yields a session
#: and commits on success, rolls back on error (see :func:`session_scope`).
UnitOfWork = Callable[[], AbstractContextManager[orm.Session]]

# Constraint names stable across databases, so Alembic migrations can refer to them.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(orm.DeclarativeBase):
    """This library's declarative base, on its own :data:`metadata`."""

    metadata = metadata


def _now() -> datetime:
    return datetime.now(UTC)


class BounceEvent(Base):
    """One accepted event, keyed by :attr:`Bounce.key`; the store's record of it."""

    __tablename__ = "bounce_events"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    key: orm.Mapped[str] = orm.mapped_column(sa.String(255), unique=True)
    provider: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    email: orm.Mapped[str] = orm.mapped_column(sa.String(320), index=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    type: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    received_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    finished: orm.Mapped[bool] = orm.mapped_column(default=False)
    attempts: orm.Mapped[int] = orm.mapped_column(default=1)
    # The lease: who runs the handlers now, until when (Unix time, shared by processes).
    lease_token: orm.Mapped[str | None] = orm.mapped_column(sa.String(32))
    lease_until: orm.Mapped[float | None]
    body: orm.Mapped[bytes] = orm.mapped_column(sa.LargeBinary, deferred=True)


class CompletedHandler(Base):
    """A handler that completed an event. A row per handler: recording one is an INSERT."""

    __tablename__ = "bounce_event_handlers"

    event_key: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), sa.ForeignKey("bounce_events.key", ondelete="CASCADE"), primary_key=True
    )
    handler: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    completed_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))


class Notice(Base):
    """A bounce to tell one user about, once; ``shown_at`` is set when shown."""

    __tablename__ = "bounce_notices"
    __table_args__ = (
        sa.UniqueConstraint("event_key", "user_id"),
        # The per-request lookup: a user's notices not shown yet.
        sa.Index("ix_bounce_notices_user_pending", "user_id", "shown_at"),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    email: orm.Mapped[str] = orm.mapped_column(sa.String(320))
    event_key: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    type: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    description: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    created_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    shown_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))

    def render(self, template: str = DEFAULT_NOTICE) -> str:
        """The notice text: ``template`` with ``{email}``, ``{description}``, ``{kind}``,
        ``{type}`` filled in."""
        return template.format_map(
            {
                "email": self.email,
                "description": self.description.strip(),
                "kind": self.kind,
                "type": self.type,
            }
        )


def create_all(bind: sa.Engine | sa.Connection) -> None:
    """Create this library's tables where missing (for apps without migrations).

    With Alembic, add :data:`metadata` to ``target_metadata`` instead.
    """
    metadata.create_all(bind)


@contextmanager
def session_scope(factory: Callable[[], orm.Session]) -> Iterator[orm.Session]:
    """A new session from ``factory``: commit on success, roll back on error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _session_factory(bind: Any) -> Callable[[], orm.Session]:
    if isinstance(bind, sa.Engine | sa.Connection):
        return orm.sessionmaker(bind=bind)
    if callable(bind):
        return bind  # type: ignore[no-any-return]
    raise ConfigurationError("expected an Engine, a sessionmaker or a callable returning a Session")


class SQLAlchemyStore:
    """The :class:`~bounce_middleware.store.Store` protocol in the app's database.

    ``bind`` is an ``Engine`` or a ``sessionmaker`` (any callable returning a
    plain ``Session``). Give it its own sessions, not a ``scoped_session`` or a
    ``zope.sqlalchemy``-managed one: each call commits at once, independently
    of the request. Claims rely on the unique event key and conditional
    UPDATEs, so any number of processes can share the tables. Any database
    error is raised as :class:`~bounce_middleware.errors.StoreUnavailable`.
    """

    def __init__(self, bind: sa.Engine | Callable[[], orm.Session]) -> None:
        self._factory = _session_factory(bind)

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        key = bounce.key
        token = new_token()
        try:
            try:
                with session_scope(self._factory) as session:
                    session.add(
                        BounceEvent(
                            key=key,
                            provider=bounce.provider,
                            email=bounce.email,
                            kind=bounce.kind.value,
                            type=bounce.type,
                            received_at=_now(),
                            finished=False,
                            attempts=1,
                            lease_token=token,
                            lease_until=time.time() + lease_seconds,
                            body=bounce.body,
                        )
                    )
                return Claim(key, ClaimState.NEW, frozenset(), token)
            except sa_exc.IntegrityError:
                pass  # known event: take the lease if free
            now = time.time()
            with session_scope(self._factory) as session:
                taken = session.execute(
                    sa.update(BounceEvent)
                    .where(
                        BounceEvent.key == key,
                        BounceEvent.finished.is_(False),
                        sa.or_(BounceEvent.lease_until.is_(None), BounceEvent.lease_until <= now),
                    )
                    .values(
                        lease_token=token,
                        lease_until=now + lease_seconds,
                        attempts=BounceEvent.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
                finished = session.scalar(
                    sa.select(BounceEvent.finished).where(BounceEvent.key == key)
                )
                completed = frozenset(
                    session.scalars(
                        sa.select(CompletedHandler.handler).where(CompletedHandler.event_key == key)
                    )
                )
        except sa_exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"bounce store: {type(exc).__name__}") from exc
        if _rowcount(taken) == 1:
            return Claim(key, ClaimState.RESUMED, completed, token)
        if finished:
            return Claim(key, ClaimState.DONE, completed)
        return Claim(key, ClaimState.BUSY, completed)

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim."""
        try:
            with session_scope(self._factory) as session:
                exists = session.scalar(
                    sa.select(sa.func.count())
                    .select_from(CompletedHandler)
                    .where(
                        CompletedHandler.event_key == claim.key, CompletedHandler.handler == handler
                    )
                )
                if not exists:
                    session.add(
                        CompletedHandler(event_key=claim.key, handler=handler, completed_at=_now())
                    )
                if finished:
                    session.flush()
                    _release(session, claim, finished=True)
        except sa_exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"bounce store: {type(exc).__name__}") from exc

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        try:
            with session_scope(self._factory) as session:
                _release(session, claim, finished=finished)
        except sa_exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"bounce store: {type(exc).__name__}") from exc

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events, newest first, optionally filtered."""
        query = sa.select(BounceEvent).options(orm.undefer(BounceEvent.body))
        if kind is not None:
            query = query.where(BounceEvent.kind == BounceKind(kind).value)
        if email is not None:
            query = query.where(sa.func.lower(BounceEvent.email) == email.lower())
        if unfinished:
            query = query.where(BounceEvent.finished.is_(False))
        query = query.order_by(BounceEvent.id.desc()).limit(limit)
        try:
            with session_scope(self._factory) as session:
                events = session.scalars(query).all()
                done: dict[str, set[str]] = {}
                keys = [e.key for e in events]
                if keys:
                    rows = session.execute(
                        sa.select(CompletedHandler.event_key, CompletedHandler.handler).where(
                            CompletedHandler.event_key.in_(keys)
                        )
                    )
                    for event_key, handler in rows:
                        done.setdefault(event_key, set()).add(handler)
                return [
                    Record(
                        key=e.key,
                        provider=e.provider,
                        email=e.email,
                        kind=_kind(e.kind),
                        type=e.type,
                        received_at=_aware(e.received_at),
                        finished=e.finished,
                        completed=frozenset(done.get(e.key, ())),
                        body=e.body,
                        attempts=e.attempts,
                    )
                    for e in events
                ]
        except sa_exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"bounce store: {type(exc).__name__}") from exc


def _release(session: orm.Session, claim: Claim, *, finished: bool) -> None:
    # Only our own lease: after it expired, another delivery may hold a new one.
    session.execute(
        sa.update(BounceEvent)
        .where(BounceEvent.key == claim.key, BounceEvent.lease_token == claim.token)
        .values(lease_token=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    if finished:
        session.execute(
            sa.update(BounceEvent)
            .where(BounceEvent.key == claim.key)
            .values(finished=True)
            .execution_options(synchronize_session=False)
        )


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


def _kind(value: str) -> BounceKind:
    try:
        return BounceKind(value)
    except ValueError:
        return BounceKind.UNKNOWN


def _aware(value: datetime) -> datetime:
    # SQLite gives back naive datetimes; they were stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class UserBounceHandler:
    """A handler (a callable taking a :class:`~bounce_middleware.Bounce`) that records
    a :class:`Notice` for every user whose address bounced.

    ``user_model`` is the app's mapped user class, ``email_attribute`` the name
    of its address attribute (matched case-insensitively), ``id_attribute`` the
    attribute identifying a user (default: the single-column primary key).
    ``unit_of_work`` gives the session to use and commits it: by default
    :func:`session_scope` over ``sessionmaker(bind=bind)``; Flask passes one
    over ``db.session``, Pyramid one committing through ``transaction``.
    ``kinds`` are the kinds that notify (default :data:`DEFAULT_NOTIFY_KINDS`);
    other bounces are ignored. Unknown addresses are ignored.

    Idempotent: one notice per (event key, user), so a redelivery adds nothing.
    Register it with ``middleware.add_handler(handler, kinds=handler.kinds)``.
    """

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
            factory = _session_factory(bind)
            unit_of_work = lambda: session_scope(factory)  # noqa: E731
        self.unit_of_work = unit_of_work
        try:
            self.kinds = frozenset(
                BounceKind(k) for k in (DEFAULT_NOTIFY_KINDS if kinds is None else kinds)
            )
        except ValueError as exc:
            raise ConfigurationError(f"UserBounceHandler kinds: {exc}") from None

    def identity(self, user: object) -> tuple[object, str]:
        """``(user id, current address)`` of a loaded user, as :func:`pending_notice` takes."""
        return getattr(user, self.id_attribute), getattr(user, self.email_attribute) or ""

    def __call__(self, bounce: Bounce) -> None:
        """Record a notice for each user with this address; skip the ones already recorded."""
        if bounce.kind not in self.kinds or not bounce.email:
            return
        with self.unit_of_work() as session:
            user_ids = {
                str(uid)
                for uid in session.scalars(
                    sa.select(self.id_column).where(
                        sa.func.lower(self.email_column) == bounce.email.lower()
                    )
                )
            }
            if not user_ids:
                return
            known = set(
                session.scalars(
                    sa.select(Notice.user_id).where(
                        Notice.event_key == bounce.key, Notice.user_id.in_(user_ids)
                    )
                )
            )
            now = _now()
            for user_id in sorted(user_ids - known):
                session.add(
                    Notice(
                        user_id=user_id,
                        email=bounce.email,
                        event_key=bounce.key,
                        kind=bounce.kind.value,
                        type=bounce.type,
                        description=bounce.description,
                        created_at=now,
                    )
                )
            session.flush()


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


def pending_notice(session: orm.Session, user_id: object, current_email: str) -> Notice | None:
    """The newest notice not shown yet for the user's *current* address, or None.

    A notice about an address the user no longer has is never returned: a user
    who fixed their address sees nothing.
    """
    if not current_email:
        return None
    return session.scalars(
        sa.select(Notice)
        .where(
            Notice.user_id == str(user_id),
            Notice.shown_at.is_(None),
            sa.func.lower(Notice.email) == current_email.lower(),
        )
        .order_by(Notice.id.desc())
        .limit(1)
    ).first()


def mark_shown(session: orm.Session, notice: Notice) -> bool:
    """Mark ``notice`` and every other pending notice for the same user and address
    shown; the caller commits.

    Returns False when a concurrent request marked it first, so "show only if
    this returns True" gives exactly once even across processes.
    """
    result = session.execute(
        sa.update(Notice)
        .where(
            Notice.user_id == notice.user_id,
            Notice.shown_at.is_(None),
            sa.func.lower(Notice.email) == notice.email.lower(),
        )
        .values(shown_at=_now())
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) > 0
