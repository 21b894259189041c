"""The application each server of the several-servers test runs, and its database.

:func:`create_app` (gunicorn: ``tests.scale_app:create_app()``) is
:class:`~bounce_middleware.BounceMiddleware` on one Postmark route, its store
a :class:`~bounce_middleware.adapters.sqlalchemy.SQLAlchemyStore` in the
PostgreSQL database ``BOUNCE_SCALE_DB`` names, shared by every server, with
two transactional handlers writing to that same database:

- the shipped :class:`~bounce_middleware.adapters.sqlalchemy.UserBounceHandler`:
  one ``bounce_notices`` row per user whose address bounced (unique per event
  and user);
- :func:`record`, written as the README's "Transactional handlers" section
  shows: one ``scale_effects`` row per application, with no unique key, so a
  second application of an event would be a second row. For addresses
  starting with ``slow`` it waits ``BOUNCE_SLOW_SECONDS`` inside its
  transaction, so that duplicates overlap and a killed server leaves events
  half done.

With ``BOUNCE_SCALE_STORE=postgres`` the store is a
:class:`~bounce_middleware.postgres_store.PostgresStore` in the same database
instead: the same handlers then leave their completions to the middleware
(at least once).

:func:`create_store_app` (``tests.scale_app:create_store_app()``) is what
``benchmarks/postgres_http.py`` measures: the same route on the store of
``BOUNCE_STORE_URL`` (a PostgresStore or an SQLiteStore) with one handler that
does nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import orm

from bounce_middleware import Bounce, BounceMiddleware, Delivery, open_store
from bounce_middleware.adapters.sqlalchemy import SQLAlchemyStore, UserBounceHandler, create_all
from bounce_middleware.adapters.sqlalchemy.users import folded
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.store import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PATH = "/postmark/bounce"
# Long and unpublished: the servers log no weak-credential warning.
USER, PASSWORD = "postmark", "scale-tests-webhook-password"
#: The handlers' names, as the store records their completions.
SHIPPED = "bounce_middleware.adapters.sqlalchemy.UserBounceHandler"
RECORD = "tests.scale_app.record"
HANDLERS = (SHIPPED, RECORD)


class Base(orm.DeclarativeBase):
    """The application's own tables."""


class Member(Base):
    """The application's users: one per address the test sends bounces for."""

    __tablename__ = "scale_members"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    email: orm.Mapped[str] = orm.mapped_column(sa.Text)


class Effect(Base):
    """One row per application of :func:`record`: no unique key hides a second one."""

    __tablename__ = "scale_effects"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    event_key: orm.Mapped[str] = orm.mapped_column(sa.Text, index=True)
    server: orm.Mapped[str] = orm.mapped_column(sa.Text)
    pid: orm.Mapped[int]


def create_database(url: str, emails: Iterable[str]) -> None:
    """The app's tables with one member per address, the library's tables, and the index
    that serves the shipped handler's look-up (PostgreSQL folds the column in SQL)."""
    engine = sa.create_engine(url)
    try:
        Base.metadata.create_all(engine)
        create_all(engine)
        with engine.begin() as conn:
            # Exactly the handler's expression (an unqualified column: index DDL wants one).
            expression = folded(engine.dialect, sa.column("email")).compile(
                conn, compile_kwargs={"literal_binds": True}
            )
            conn.execute(
                sa.text(f"CREATE INDEX ix_scale_members_folded ON scale_members (({expression}))")
            )
            conn.execute(sa.insert(Member), [{"email": email} for email in emails])
    finally:
        engine.dispose()


_sessions: orm.sessionmaker[orm.Session] | None = None


def record(bounce: Bounce, delivery: Delivery) -> bool:
    """The application's own effect, committed with its completion (exactly once)."""
    assert _sessions is not None, "create_app() sets the sessions up"
    with _sessions.begin() as session:
        session.add(
            Effect(event_key=bounce.key, server=os.environ["BOUNCE_SERVER"], pid=os.getpid())
        )
        if bounce.email.startswith("slow"):
            session.flush()
            # Written, not committed: a kill now leaves the event half done.
            time.sleep(float(os.environ["BOUNCE_SLOW_SECONDS"]))
        store = delivery.store
        if isinstance(store, SQLAlchemyStore) and store.writes_through(session):
            store.complete(
                delivery.claim, delivery.name, finished=delivery.finishes, session=session
            )
            return True
    return False


record.transactional = True  # type: ignore[attr-defined]


def _root(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application\n"]


def create_app() -> WSGIApplication:
    """One server's application; ``BOUNCE_SCALE_DB`` (a ``postgresql+psycopg://`` URL),
    ``BOUNCE_SCALE_STORE`` (``sqlalchemy``, or ``postgres`` for a PostgresStore in the
    same database), ``BOUNCE_SERVER`` (its name), ``BOUNCE_LEASE_SECONDS`` and
    ``BOUNCE_SLOW_SECONDS``."""
    global _sessions
    url = os.environ["BOUNCE_SCALE_DB"]
    # Opened lazily: run without --preload, each worker process makes its own connections.
    engine = sa.create_engine(url, pool_size=8, max_overflow=8)
    _sessions = orm.sessionmaker(bind=engine)
    store: Store = SQLAlchemyStore(engine)
    if os.environ["BOUNCE_SCALE_STORE"] == "postgres":
        # Its own tables in the same database: the handlers' writes cannot join its
        # completions, so they run at least once (and record no completion themselves).
        store = PostgresStore(url.replace("postgresql+psycopg://", "postgresql://"))
    middleware = BounceMiddleware(
        _root,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        store=store,
        retry_after=1,
        lease_seconds=float(os.environ["BOUNCE_LEASE_SECONDS"]),
    )
    users = UserBounceHandler(Member, "email", bind=engine)
    middleware.add_handler(users, kinds=users.kinds)
    middleware.add_handler(record)
    return middleware


def nothing(bounce: Bounce) -> None:
    """The benchmark's handler: the store's work alone is measured."""


def create_store_app() -> WSGIApplication:
    """The benchmark's application: the store of ``BOUNCE_STORE_URL``, one no-op handler."""
    store = open_store(os.environ["BOUNCE_STORE_URL"])
    check = getattr(store, "check", None)
    if check is not None:
        check()
    return BounceMiddleware(
        _root, path=PATH, credentials=[f"{USER}:{PASSWORD}"], handlers=[nothing], store=store
    )
