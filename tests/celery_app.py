"""The application of the Celery tests: its Celery app, middleware, handlers and ledger.

The tests run ``celery -A tests.celery_app worker`` (and ``beat``) in
subprocesses, configured by environment variables, while the test process
answers webhooks with :func:`make_middleware` on the same store and broker.

- ``BOUNCE_CELERY_BROKER``: the Redis URL.
- ``BOUNCE_CELERY_STORE``: the store: a URL for :func:`~bounce_middleware.open_store`
  (``sqlite:///...``, ``postgresql://...``), or ``sqlalchemy+`` and a SQLAlchemy URL
  for a :class:`~bounce_middleware.adapters.sqlalchemy.SQLAlchemyStore`.
- ``BOUNCE_CELERY_LEDGER``: the SQLAlchemy URL of the ledger, where the handlers
  write one row per application (``effects``) and per attempt (``attempts``), so a
  test counts what really ran, in whatever process. On the store's own database
  (``sqlalchemy+`` stores) :func:`record` is transactional: exactly once.
- ``BOUNCE_CELERY_OPTIONS``: JSON of the middleware's ``lease_seconds`` and the
  handoff's options (``retry_backoff``, ``max_retries``, ``sweep_older_than``...),
  and ``sweep_every`` for beat.

Handlers, in order: :func:`record` (sleeps ``slow_seconds`` for ``slow...``
addresses) and :func:`flaky` (fails ``flaky_failures`` times for ``flaky...``
addresses; kills its own worker process at its first attempt at a ``crash...``
address: after :func:`record` committed, before its own effect).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from celery import Celery
from sqlalchemy import orm

from bounce_middleware import Bounce, BounceMiddleware, Delivery, Store, open_store
from bounce_middleware.adapters.sqlalchemy import SQLAlchemyStore, create_all
from bounce_middleware.celery_tasks import CeleryHandoff, sweep_schedule
from bounce_middleware.providers import Postmark, SendGrid

# Long and unpublished: no weak-credential warning.
USER, PASSWORD = "postmark", "celery-tests-webhook-password"
CREDENTIALS = [f"{USER}:{PASSWORD}"]
POSTMARK_PATH = "/hooks/postmark"
SENDGRID_PATH = "/hooks/sendgrid"
#: The handlers' names, as the store records their completions.
HANDLERS = ("tests.celery_app.record", "tests.celery_app.flaky")
#: What the test settings name (``bounce.celery_app = tests.celery_app:app``).
BROKER_VARIABLE = "BOUNCE_CELERY_BROKER"


class Base(orm.DeclarativeBase):
    """The ledger's tables."""


class Effect(Base):
    """One row per application of a handler: no unique key hides a second one."""

    __tablename__ = "celery_effects"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    key: orm.Mapped[str] = orm.mapped_column(sa.Text, index=True)
    handler: orm.Mapped[str] = orm.mapped_column(sa.Text)
    pid: orm.Mapped[int]


class Attempt(Base):
    """One row per attempt of :func:`flaky`, with its time (the retries' backoff)."""

    __tablename__ = "celery_attempts"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    key: orm.Mapped[str] = orm.mapped_column(sa.Text, index=True)
    at: orm.Mapped[float]
    pid: orm.Mapped[int]


def options() -> dict[str, Any]:
    """``BOUNCE_CELERY_OPTIONS``, decoded."""
    loaded: dict[str, Any] = json.loads(os.environ.get("BOUNCE_CELERY_OPTIONS", "{}"))
    return loaded


_engines: dict[str, sa.Engine] = {}


def engine(url: str) -> sa.Engine:
    """One engine per URL in this process (SQLite waits for locks up to 30 s)."""
    if url not in _engines:
        args = {"timeout": 30} if url.startswith("sqlite") else {}
        _engines[url] = sa.create_engine(url, connect_args=args)
    return _engines[url]


def create_ledger(url: str) -> None:
    """The ledger's tables, before any process writes to them."""
    Base.metadata.create_all(engine(url))


def open_test_store(spec: str) -> Store:
    """The store ``spec`` names (see the module's docstring); its tables created."""
    if spec.startswith("sqlalchemy+"):
        bind = engine(spec.removeprefix("sqlalchemy+"))
        create_all(bind)
        return SQLAlchemyStore(bind)
    return open_store(spec)


def _ledger() -> sa.Engine:
    return engine(os.environ["BOUNCE_CELERY_LEDGER"])


def record(bounce: Bounce, delivery: Delivery) -> bool:
    """The main effect, recorded with its completion in one transaction where it can be."""
    if bounce.email.startswith("slow"):
        time.sleep(float(options().get("slow_seconds", 0.5)))
    with orm.Session(_ledger()) as session, session.begin():
        session.add(Effect(key=bounce.key, handler="record", pid=os.getpid()))
        store = delivery.store
        if isinstance(store, SQLAlchemyStore) and store.writes_through(session):
            store.complete(
                delivery.claim, delivery.name, finished=delivery.finishes, session=session
            )
            return True
    return False


record.transactional = True  # type: ignore[attr-defined]


def flaky(bounce: Bounce) -> None:
    """Fails its first attempts at ``flaky...`` addresses; dies at its first ``crash...``."""
    with orm.Session(_ledger()) as session, session.begin():
        session.add(Attempt(key=bounce.key, at=time.time(), pid=os.getpid()))
    with orm.Session(_ledger()) as session:
        tries = session.scalar(
            sa.select(sa.func.count()).select_from(Attempt).where(Attempt.key == bounce.key)
        )
    if bounce.email.startswith("crash") and tries == 1:
        # What the OOM killer does: no exception, no cleanup, the claim stays taken.
        os.kill(os.getpid(), signal.SIGKILL)
    if bounce.email.startswith("flaky") and (tries or 0) <= int(options().get("flaky_failures", 2)):
        raise RuntimeError("the mail service is down")
    with orm.Session(_ledger()) as session, session.begin():
        session.add(Effect(key=bounce.key, handler="flaky", pid=os.getpid()))


def make_celery(broker: str) -> Celery:
    """A Celery app on ``broker`` (Redis), as the tests' worker and web side use it."""
    celery = Celery("bounce_celery_tests", broker=broker)
    celery.conf.update(
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_default_queue="bounce-tests",
        # Fail fast when the broker is down: the webhook answers 200 anyway.
        broker_connection_timeout=2,
        beat_schedule=sweep_schedule(every=float(options().get("sweep_every", 1.0))),
    )
    return celery


def make_middleware(celery: Celery, store: Store, **extra: Any) -> BounceMiddleware:
    """The application's middleware: Postmark and SendGrid routes, handed off to ``celery``."""
    settings = {**options(), **extra}
    handoff_options = {
        key: settings[key]
        for key in (
            "max_retries",
            "retry_backoff",
            "retry_backoff_max",
            "retry_jitter",
            "sweep_older_than",
            "publish_retries",
        )
        if key in settings
    }
    return BounceMiddleware(
        root_app,
        routes={
            POSTMARK_PATH: Postmark(credentials=CREDENTIALS),
            SENDGRID_PATH: SendGrid(credentials=CREDENTIALS),
        },
        handlers=[record, flaky],
        store=store,
        retry_after=1,
        lease_seconds=float(settings.get("lease_seconds", 300)),
        handoff=CeleryHandoff(celery, **handoff_options),
    )


def root_app(environ: Any, start_response: Any) -> Iterable[bytes]:
    """The application behind the middleware."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application\n"]


def effects(ledger: str) -> list[tuple[str, str]]:
    """Every (event key, handler) applied, once per application."""
    with orm.Session(engine(ledger)) as session:
        return [(e.key, e.handler) for e in session.scalars(sa.select(Effect))]


def attempts(ledger: str, key: str) -> list[float]:
    """When :func:`flaky` was tried for ``key``, in order."""
    with orm.Session(engine(ledger)) as session:
        return list(
            session.scalars(sa.select(Attempt.at).where(Attempt.key == key).order_by(Attempt.at))
        )


#: The Celery app settings name in the tests (``tests.celery_app:settings_celery``); a test
#: replaces it with one on its own broker. Made here, it never connects.
settings_celery = make_celery("redis://127.0.0.1:9/0")


def application_factory() -> BounceMiddleware:
    """What a worker's ``bounce_middleware_app`` names: the middleware of ``BOUNCE_CELERY_STORE``
    handing off to :data:`settings_celery`."""
    return make_middleware(settings_celery, open_test_store(os.environ["BOUNCE_CELERY_STORE"]))


# The worker's app and middleware, built at import from the environment (celery -A).
if os.environ.get(BROKER_VARIABLE):
    app = make_celery(os.environ[BROKER_VARIABLE])
    if os.environ.get("BOUNCE_CELERY_STORE"):
        middleware = make_middleware(app, open_test_store(os.environ["BOUNCE_CELERY_STORE"]))
