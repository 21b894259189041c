"""SQLAlchemy 2.x support shared by the Flask and Pyramid adapters.

Framework-independent: plain SQLAlchemy sessions, Flask-SQLAlchemy and
Pyramid's ``transaction`` + ``zope.sqlalchemy`` sessions all work.

- :data:`metadata` holds this library's tables (``bounce_events``,
  ``bounce_event_handlers``, ``bounce_rejections``, ``bounce_notices``) on a
  ``MetaData`` of its own, so they need none of the application's declarative
  base. Create them with :func:`create_all`, or with Alembic by listing this
  metadata in ``env.py``::

      from bounce_middleware.adapters.sqlalchemy import metadata as bounce_metadata
      target_metadata = [Base.metadata, bounce_metadata]   # then: alembic revision --autogenerate

  Tables made by version 0.1 are brought up to date by :func:`upgrade_tables`.
- :class:`SQLAlchemyStore` is the de-duplication store (the
  :class:`~bounce_middleware.store.Store` protocol) in the application's
  database, shared by every process that uses it.
- :class:`UserBounceHandler` is the transactional handler that records a
  :class:`Notice` for every user whose address bounced, exactly once.
- :func:`take_notice` is what a framework's "show the notice once" hook
  needs (built on :func:`pending_notice` and :func:`mark_shown`).

Modules: ``tables`` (the schema), ``store`` and ``records`` (its listings), ``users``
(the handler), ``notices`` (the queries), ``sessions`` (units of work), ``upgrade``.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    from bounce_middleware.errors import ImproperlyInstalled

    raise ImproperlyInstalled("sqlalchemy", "SQLAlchemy") from exc

# The core's; version 0.1 defined it here.
from bounce_middleware.handlers import DEFAULT_NOTIFY_KINDS as DEFAULT_NOTIFY_KINDS

from .notices import mark_shown, pending_notice, take_notice
from .sessions import UnitOfWork, session_scope
from .store import SQLAlchemyStore
from .tables import (
    DEFAULT_NOTICE,
    BounceEvent,
    CompletedHandler,
    Notice,
    Rejection,
    create_all,
    metadata,
)
from .upgrade import upgrade_tables
from .users import UserBounceHandler

__all__ = [
    "DEFAULT_NOTICE",
    "BounceEvent",
    "CompletedHandler",
    "Notice",
    "Rejection",
    "SQLAlchemyStore",
    "UnitOfWork",
    "UserBounceHandler",
    "create_all",
    "mark_shown",
    "metadata",
    "pending_notice",
    "session_scope",
    "take_notice",
    "upgrade_tables",
]
