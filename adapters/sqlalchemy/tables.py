"""This library's tables, on a ``MetaData`` of its own (none of the app's models needed).

- ``bounce_events``: one row per accepted event (the store's record of it);
- ``bounce_event_handlers``: one row per handler that completed an event;
- ``bounce_rejections``: authenticated requests refused with 400, kept for replay;
- ``bounce_notices``: one row per (event, user) to tell that user once.

Every column holding request data is unbounded text: no length limit of the
database may turn an accepted event into a permanent failure. Addresses are
also kept folded (:func:`~bounce_middleware.model.fold_address`, in the
``email_key`` columns), so matching is Unicode-aware on every database; no
address column is indexed (a PostgreSQL index entry is limited to ~2.7 KB).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import orm

__all__ = [
    "DEFAULT_NOTICE",
    "Base",
    "BounceEvent",
    "CompletedHandler",
    "Notice",
    "Rejection",
    "create_all",
    "metadata",
]

#: Default notice wording; ``{email}``, ``{description}``, ``{kind}`` and ``{type}``
#: are filled from the :class:`Notice`.
DEFAULT_NOTICE = (
    "We could not deliver e-mail to {email}: {description} "
    "Please check that your address is correct."
)

# Constraint names stable across databases, so Alembic migrations can refer to them.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Timestamps are stored in UTC; SQLite hands them back naive.
_Timestamp = sa.DateTime(timezone=True)
# Indexed text (keys, handler names, user ids): bounded by what produces it, not by the
# request. MySQL/MariaDB index TEXT only with a prefix length, so there it stays VARCHAR.
_Key = sa.Text().with_variant(sa.String(255), "mysql", "mariadb")


class Base(orm.DeclarativeBase):
    """This library's declarative base, on its own :data:`metadata`."""

    metadata = metadata


class BounceEvent(Base):
    """One accepted event, keyed by :attr:`Bounce.key`; the store's record of it."""

    __tablename__ = "bounce_events"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    # Bounded by Bounce.key itself (the core digests very long ids), so it can be unique.
    key: orm.Mapped[str] = orm.mapped_column(_Key, unique=True)
    provider: orm.Mapped[str] = orm.mapped_column(sa.Text)
    email: orm.Mapped[str] = orm.mapped_column(sa.Text)
    #: ``fold_address(email)``: what ``records(email=...)`` compares.
    email_key: orm.Mapped[str] = orm.mapped_column(sa.Text)
    kind: orm.Mapped[str] = orm.mapped_column(sa.Text)
    type: orm.Mapped[str] = orm.mapped_column(sa.Text)
    received_at: orm.Mapped[datetime] = orm.mapped_column(_Timestamp)
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
        _Key, sa.ForeignKey("bounce_events.key", ondelete="CASCADE"), primary_key=True
    )
    # Registered handler names: printable, chosen by the application.
    handler: orm.Mapped[str] = orm.mapped_column(_Key, primary_key=True)
    completed_at: orm.Mapped[datetime] = orm.mapped_column(_Timestamp)


class Rejection(Base):
    """An authenticated request refused with 400, kept (body and reason) to be replayed."""

    __tablename__ = "bounce_rejections"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    #: :func:`~bounce_middleware.store.rejection_key`: one row per provider and body.
    key: orm.Mapped[str] = orm.mapped_column(_Key, unique=True)
    provider: orm.Mapped[str] = orm.mapped_column(sa.Text)
    reason: orm.Mapped[str] = orm.mapped_column(sa.Text)
    received_at: orm.Mapped[datetime] = orm.mapped_column(_Timestamp)
    #: Set by ``resolve`` once replayed.
    resolved: orm.Mapped[bool] = orm.mapped_column(default=False)
    body: orm.Mapped[bytes] = orm.mapped_column(sa.LargeBinary, deferred=True)


class Notice(Base):
    """A bounce to tell one user about, once; ``shown_at`` is set when shown."""

    __tablename__ = "bounce_notices"
    __table_args__ = (
        sa.UniqueConstraint("event_key", "user_id"),
        # The per-request lookup: a user's notices not shown yet.
        sa.Index("ix_bounce_notices_user_pending", "user_id", "shown_at"),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    user_id: orm.Mapped[str] = orm.mapped_column(_Key)
    #: The address that bounced, as the provider sent it (shown in the notice).
    email: orm.Mapped[str] = orm.mapped_column(sa.Text)
    #: ``fold_address(email)``: compared with the user's current address, folded alike.
    email_key: orm.Mapped[str] = orm.mapped_column(sa.Text)
    event_key: orm.Mapped[str] = orm.mapped_column(_Key)
    kind: orm.Mapped[str] = orm.mapped_column(sa.Text)
    type: orm.Mapped[str] = orm.mapped_column(sa.Text)
    description: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    created_at: orm.Mapped[datetime] = orm.mapped_column(_Timestamp)
    shown_at: orm.Mapped[datetime | None] = orm.mapped_column(_Timestamp)

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

    With Alembic, add :data:`metadata` to ``target_metadata`` instead. Tables
    made by version 0.1 need :func:`~bounce_middleware.adapters.sqlalchemy.upgrade_tables`.
    """
    metadata.create_all(bind)


def now() -> datetime:
    """The current time, aware, in UTC: what every timestamp column holds."""
    return datetime.now(UTC)
