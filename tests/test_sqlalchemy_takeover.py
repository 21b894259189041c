"""Exactly once for transactional handlers when a delivery's lease is taken over.

Delivery A claims an event with a short lease and is held back until the lease
expired; delivery B then claims it (RESUMED). Both run the same transactional
handler, whose writes and ``store.complete(..., session=...)`` share one
transaction. Only the delivery holding the lease may commit: the other one's
transaction rolls back (500, the provider retries). On SQLite and on the real
PostgreSQL server, with a handler written as the README's "Transactional
handlers" section shows and with the shipped ``UserBounceHandler``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from webtest import TestApp

from bounce_middleware import (
    Bounce,
    BounceMiddleware,
    ClaimState,
    Delivery,
    StoreUnavailable,
)
from bounce_middleware.adapters.sqlalchemy import (
    SQLAlchemyStore,
    UserBounceHandler,
    session_scope,
)
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.sqlalchemy_db import Account, all_notices, bounce
from tests.sqlalchemy_db import engine as engine  # noqa: F401 - fixtures
from tests.sqlalchemy_db import url as url  # noqa: F401
from tests.takeover import WAIT, Pauses

PASSWORD = "a-long-enough-password"
LEASE = 0.4  # seconds: A's lease expires within the test
PAYLOAD = postmark_bounce(email="bob@example.com", ID=4242)
OWN = "tests.suppress"
SHIPPED = "bounce_middleware.adapters.sqlalchemy.UserBounceHandler"
THEN = "tests.then"


class Ours(orm.DeclarativeBase):
    """The application's own tables for its own transactional handler."""


class Suppression(Ours):
    """One row per application of the handler: no unique key hides a second one."""

    __tablename__ = "suppressions"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    email: orm.Mapped[str] = orm.mapped_column(sa.Text)
    event_key: orm.Mapped[str] = orm.mapped_column(sa.Text)


class Post(threading.Thread):
    """One delivery of :data:`PAYLOAD`, in a thread of its own; its answer once joined."""

    def __init__(self, app: TestApp, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.app = app
        self.answer: tuple[int, str] | None = None

    def run(self) -> None:
        response = self.app.post_json("/hook", PAYLOAD, headers=auth(), status="*")
        self.answer = (response.status_int, response.text)

    def result(self) -> tuple[int, str]:
        self.join(WAIT)
        assert self.answer is not None, f"delivery {self.name} did not answer"
        return self.answer


def auth() -> dict[str, str]:
    return auth_headers("postmark", PASSWORD)


def own_handler(engine: sa.Engine, pause: Pauses) -> Callable[[Bounce, Delivery], bool]:
    """A transactional handler written as the README shows, with the test's pauses."""
    Ours.metadata.create_all(engine)
    Session = orm.sessionmaker(bind=engine)

    def suppress(bounce: Bounce, delivery: Delivery) -> bool:
        pause("before")
        with Session.begin() as session:
            session.add(Suppression(email=bounce.email, event_key=bounce.key))
            store = delivery.store
            if isinstance(store, SQLAlchemyStore) and store.writes_through(session):
                store.complete(
                    delivery.claim, delivery.name, finished=delivery.finishes, session=session
                )
                pause("after")  # written and completed, not committed yet
                return True
        return False

    suppress.transactional = True  # type: ignore[attr-defined]
    return suppress


def shipped_handler(engine: sa.Engine, pause: Pauses) -> UserBounceHandler:
    """The shipped handler, its unit of work pausing before it opens and before its commit."""
    factory = orm.sessionmaker(bind=engine)

    @contextmanager
    def unit_of_work() -> Iterator[orm.Session]:
        pause("before")
        with session_scope(factory) as session:
            yield session
            session.flush()
            pause("after")

    return UserBounceHandler(Account, "mail", unit_of_work=unit_of_work)


def make_app(
    engine: sa.Engine, handler: Any, name: str, then: Callable[[Bounce], None] | None = None
) -> TestApp:
    """The middleware with the handler, and ``then`` (a plain handler) after it if given."""
    middleware = BounceMiddleware(
        lambda environ, start_response: [],
        path="/hook",
        credentials=[f"postmark:{PASSWORD}"],
        store=SQLAlchemyStore(engine),
        lease_seconds=LEASE,
    )
    middleware.add_handler(handler, name=name)
    if then is not None:
        middleware.add_handler(then, name=THEN)
    return TestApp(middleware)


def applied(engine: sa.Engine, name: str) -> int:
    """How many times the handler's writes were committed."""
    with orm.Session(engine) as session:
        if name == OWN:
            return len(session.scalars(sa.select(Suppression)).all())
    return len(all_notices(engine))  # bob is one user: one notice per application


HANDLERS = {OWN: own_handler, SHIPPED: shipped_handler}


def start_a(
    engine: sa.Engine, name: str, pause: Pauses, then: Callable[[Bounce], None] | None = None
) -> tuple[TestApp, Post]:
    """Delivery A: claims the event, then waits before its transaction until its lease
    expired."""
    app = make_app(engine, HANDLERS[name](engine, pause), name, then)
    a = Post(app, "A")
    a.start()
    pause.reached("A", "before")
    time.sleep(LEASE + 0.2)
    return app, a


def assert_finished_once(engine: sa.Engine, name: str, attempts: int) -> None:
    [record] = SQLAlchemyStore(engine).records()
    assert record.finished and record.completed == {name}
    assert record.attempts == attempts
    assert applied(engine, name) == 1


@pytest.mark.parametrize("name", [OWN, SHIPPED])
def test_the_taken_over_delivery_rolls_back_after_the_successor_committed(
    engine: sa.Engine, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    pause = Pauses(("A", "before"))
    app, a = start_a(engine, name, pause)
    b = Post(app, "B")
    b.start()
    assert b.result() == (200, "accepted\n")  # B took the event over and applied the handler
    pause.release("A", "before")
    with caplog.at_level(logging.ERROR):
        status, text = a.result()
    assert status == 500 and "handler failed" in text
    assert "the lease was taken over" in caplog.text
    assert_finished_once(engine, name, attempts=2)


@pytest.mark.parametrize("name", [OWN, SHIPPED])
def test_the_taken_over_delivery_rolls_back_while_the_successor_runs(
    engine: sa.Engine, name: str
) -> None:
    pause = Pauses(("A", "before"), ("B", "before"))
    app, a = start_a(engine, name, pause)
    b = Post(app, "B")
    b.start()
    pause.reached("B", "before")  # B holds the lease, its handler not started
    pause.release("A", "before")
    status, text = a.result()
    assert status == 500 and "handler failed" in text
    assert applied(engine, name) == 0  # A's writes rolled back
    pause.release("B", "before")
    assert b.result() == (200, "accepted\n")
    assert_finished_once(engine, name, attempts=2)


@pytest.mark.parametrize("name", [OWN, SHIPPED])
def test_a_takeover_waits_for_the_holder_that_already_finished(
    engine: sa.Engine, name: str
) -> None:
    # A's lease expired but nobody took it over yet: A may still complete. Its completion
    # locks the event's row until A commits, so B's claim waits and then finds it finished.
    pause = Pauses(("A", "before"), ("A", "after"))
    app, a = start_a(engine, name, pause)
    pause.release("A", "before")
    pause.reached("A", "after")  # written and completed in A's open transaction
    b = Post(app, "B")
    b.start()
    time.sleep(0.5)
    assert b.answer is None  # waiting for A's transaction
    pause.release("A", "after")
    assert a.result() == (200, "accepted\n")
    assert b.result() == (200, "already processed\n")
    assert_finished_once(engine, name, attempts=1)


@pytest.mark.parametrize("name", [OWN, SHIPPED])
def test_a_takeover_waits_for_the_holder_that_completed_one_handler(
    engine: sa.Engine, name: str
) -> None:
    # As above, but the transactional handler is not the last one: its completion keeps
    # A's lease, and must still lock the event's row until A commits. Otherwise B would
    # take the event over without seeing that completion, and apply the handler again.
    pause = Pauses(("A", "before"), ("A", "after"), ("A", "then"))
    ran: list[str] = []

    def then(bounce: Bounce) -> None:
        ran.append(threading.current_thread().name)
        pause("then")

    app, a = start_a(engine, name, pause, then)
    pause.release("A", "before")
    pause.reached("A", "after")
    b = Post(app, "B")
    b.start()
    time.sleep(0.5)
    assert b.answer is None  # waiting for A's transaction
    pause.release("A", "after")
    pause.reached("A", "then")  # A committed; its lease is expired: B takes over
    assert b.result() == (200, "accepted\n")  # B ran only the plain handler
    pause.release("A", "then")
    assert a.result() == (200, "accepted\n")
    assert ran == ["A", "B"]  # the plain handler: at least once
    [record] = SQLAlchemyStore(engine).records()
    assert record.finished and record.completed == {name, THEN} and record.attempts == 2
    assert applied(engine, name) == 1


def test_complete_through_a_session_needs_the_lease(engine: sa.Engine) -> None:
    store = SQLAlchemyStore(engine)
    event, _ = bounce(email="bob@example.com")
    stale = store.claim(event, lease_seconds=0)
    successor = store.claim(event, lease_seconds=60)
    taken_over = pytest.raises(StoreUnavailable, match="the lease was taken over")
    with taken_over, orm.Session(engine) as session, session.begin():
        store.complete(stale, "h", finished=True, session=session)
    [record] = store.records()
    assert record.completed == frozenset() and not record.finished
    # The holder records through its session; the lease stays its own until it finishes.
    with orm.Session(engine) as session, session.begin():
        store.complete(successor, "h", session=session)
    [record] = store.records()
    assert record.completed == {"h"} and not record.finished
    with orm.Session(engine) as session, session.begin():
        store.complete(successor, "i", finished=True, session=session)
    assert store.claim(event, lease_seconds=60).state is ClaimState.DONE
    # Without a session, as before: the completion is recorded whoever holds the lease.
    store.complete(stale, "late")
    assert store.records()[0].completed == {"h", "i", "late"}
