"""UserBounceHandler and the notice queries, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from webtest import TestApp

from bounce_middleware import (
    BounceKind,
    BounceMiddleware,
    Claim,
    ClaimState,
    ConfigurationError,
    StoreUnavailable,
)
from bounce_middleware.adapters.sqlalchemy import (
    DEFAULT_NOTICE,
    SQLAlchemyStore,
    UserBounceHandler,
    create_all,
    mark_shown,
    pending_notice,
    session_scope,
)
from bounce_middleware.handlers import Delivery
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.postgres import PostgresServer
from tests.sqlalchemy_db import Account, all_notices, bounce, database_url, make_engine
from tests.sqlalchemy_db import engine as engine  # noqa: F401 - fixtures
from tests.sqlalchemy_db import url as url  # noqa: F401

NAME = "bounce_middleware.adapters.sqlalchemy.UserBounceHandler"
PASSWORD = "a-long-enough-password"
HEADERS = auth_headers("postmark", PASSWORD)


@pytest.fixture
def handler(engine: sa.Engine) -> UserBounceHandler:
    return UserBounceHandler(Account, "mail", bind=engine)


def make_app(store: SQLAlchemyStore | None, handler: UserBounceHandler) -> TestApp:
    middleware = BounceMiddleware(
        lambda environ, start_response: [],
        path="/hook",
        credentials=[f"postmark:{PASSWORD}"],
        store=store,
    )
    middleware.add_handler(handler, kinds=handler.kinds)
    return TestApp(middleware)


def deliver(app: TestApp, email: str, status: int = 200) -> str:
    """POST a hard bounce for ``email``; the same address is the same event (a redelivery)."""
    payload = postmark_bounce(email=email, ID=zlib.crc32(email.encode()))
    return str(app.post_json("/hook", payload, headers=HEADERS, status=status).text)


# Finding users -----------------------------------------------------------------------------


def test_every_matching_user_case_insensitively_and_unicode_aware(
    engine: sa.Engine, handler: UserBounceHandler
) -> None:
    event, _ = bounce(email="ANN@example.com")
    assert handler(event) is False  # without a delivery: notices only
    handler(event)  # a redelivery adds nothing
    found = all_notices(engine)
    assert [(n.user_id, n.email, n.kind, n.type) for n in found] == [
        ("1", "ANN@example.com", "hard", "HardBounce"),
        ("2", "ANN@example.com", "hard", "HardBounce"),
    ]
    assert found[0].description == event.description
    assert found[0].created_at is not None and found[0].shown_at is None
    # "Émile@example.com" is the user's address; the bounce says "émile@example.com".
    # Version 0.1 matched 0 of 2 such cases on SQLite, whose lower() folds ASCII only.
    handler(bounce(email="émile@example.com")[0])
    assert [n.user_id for n in all_notices(engine)][-1] == "5"


def test_unknown_addresses_other_kinds_and_nul_are_ignored(
    engine: sa.Engine, handler: UserBounceHandler
) -> None:
    handler(bounce(email="nobody@example.com")[0])
    handler(bounce("SoftBounce", email="bob@example.com")[0])
    handler(bounce("SpamComplaint", email="bob@example.com")[0])
    # PostgreSQL refuses NUL in text parameters: the address is made storable first.
    handler(bounce(email="bob\x00@example.com")[0])
    assert all_notices(engine) == []


def test_kinds_and_id_attribute(engine: sa.Engine) -> None:
    handler = UserBounceHandler(
        Account, "mail", bind=engine, kinds=["complaint"], id_attribute="login"
    )
    assert handler.kinds == {BounceKind.COMPLAINT}
    handler(bounce("SpamComplaint", email="bob@example.com")[0])
    handler(bounce(email="bob@example.com")[0])
    assert [(n.user_id, n.kind) for n in all_notices(engine)] == [("bob", "complaint")]


def test_an_injected_unit_of_work(engine: sa.Engine) -> None:
    used: list[orm.Session] = []

    @contextmanager
    def unit_of_work() -> Iterator[orm.Session]:
        with orm.Session(engine) as session, session.begin():
            used.append(session)
            yield session

    UserBounceHandler(Account, "mail", unit_of_work=unit_of_work)(bounce(email="bob@x.com")[0])
    UserBounceHandler(Account, "mail", unit_of_work=unit_of_work)(
        bounce(email="bob@example.com")[0]
    )
    assert len(used) == 2
    assert [n.user_id for n in all_notices(engine)] == ["3"]


def test_all_notices_or_none(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    Account.metadata.create_all(engine)
    create_all(engine)
    with orm.Session(engine) as session, session.begin():
        session.add_all(
            [Account(login="a", mail="ann@x.com"), Account(login="b", mail="ANN@x.com")]
        )
        session.execute(
            sa.text(
                "CREATE TRIGGER no_second BEFORE INSERT ON bounce_notices "
                "WHEN NEW.user_id = '2' BEGIN SELECT RAISE(ABORT, 'no'); END"
            )
        )
    with pytest.raises(StoreUnavailable, match="bounce user handler: IntegrityError"):
        UserBounceHandler(Account, "mail", bind=engine)(bounce(email="ann@x.com")[0])
    assert all_notices(engine) == []
    engine.dispose()


def test_a_database_failure_logs_no_address_nor_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(database_url("sqlite", tmp_path, None))
    with engine.begin() as connection:
        # A database fault on the notice insert (disk full, read-only file...).
        connection.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON bounce_notices "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    store = SQLAlchemyStore(engine)
    app = make_app(store, UserBounceHandler(Account, "mail", bind=engine))
    payload = postmark_bounce(email="bob@example.com", Description="CONFIDENTIAL-DESCRIPTION")
    with caplog.at_level(logging.DEBUG):
        # A handler failure: 500, so the provider delivers the event again.
        app.post_json("/hook", payload, headers=HEADERS, status=500)
    assert "bounce user handler: IntegrityError (disk I/O error)" in caplog.text
    # SQLAlchemy's message quotes the INSERT's parameters: never in the logs.
    assert "bob@example.com" not in caplog.text
    assert "CONFIDENTIAL" not in caplog.text
    assert "[parameters:" not in caplog.text
    assert not store.records()[0].finished
    engine.dispose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"email_attribute": "email"}, "no mapped attribute 'email'"),
        ({"email_attribute": "mail"}, "needs unit_of_work"),
        ({"email_attribute": "mail", "bind": "engine", "kinds": ["bogus"]}, "kinds"),
        ({"email_attribute": "mail", "bind": 42}, "expected an Engine"),
    ],
)
def test_configuration_errors(engine: sa.Engine, kwargs: dict[str, Any], message: str) -> None:
    if kwargs.get("bind") == "engine":
        kwargs["bind"] = engine
    with pytest.raises(ConfigurationError, match=message):
        UserBounceHandler(Account, **kwargs)


# Exactly once: the notices and the completion commit together ------------------------------


def test_notices_and_completion_commit_in_one_transaction(
    engine: sa.Engine, handler: UserBounceHandler
) -> None:
    commits: list[object] = []
    sa.event.listen(engine, "commit", commits.append)
    app = make_app(SQLAlchemyStore(engine), handler)
    assert deliver(app, "bob@example.com") == "accepted\n"
    # The claim, then the handler's unit of work holding the notice and the completion:
    # no third transaction for the completion.
    assert len(commits) == 2
    store = SQLAlchemyStore(engine)
    [record] = store.records()
    assert record.finished and record.completed == {NAME}
    assert [n.user_id for n in all_notices(engine)] == ["3"]
    assert deliver(app, "bob@example.com") == "already processed\n"


def test_a_crash_before_the_commit_leaves_neither_notices_nor_completion(
    engine: sa.Engine,
) -> None:
    factory = orm.sessionmaker(bind=engine)
    crash = [True]

    @contextmanager
    def unit_of_work() -> Iterator[orm.Session]:
        with session_scope(factory) as session:
            yield session
            session.flush()
            if crash[0]:  # the notices and the completion are written, not committed
                raise OSError("worker killed before the commit")

    handler = UserBounceHandler(Account, "mail", unit_of_work=unit_of_work)
    store = SQLAlchemyStore(engine)
    app = make_app(store, handler)
    assert "handler failed" in deliver(app, "ann@example.com", status=500)
    [record] = store.records()
    assert all_notices(engine) == [] and record.completed == frozenset()
    assert not record.finished

    crash[0] = False
    assert deliver(app, "ann@example.com") == "accepted\n"
    assert [n.user_id for n in all_notices(engine)] == ["1", "2"]  # once each
    [record] = store.records()
    assert record.finished and record.completed == {NAME}


def test_a_failing_commit_on_postgresql_leaves_neither(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(database_url("postgresql", tmp_path, postgres))
    with engine.begin() as connection:
        # A deferred constraint trigger: checked by COMMIT itself, after every write.
        connection.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
        )
        connection.exec_driver_sql(
            "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON bounce_event_handlers "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    store = SQLAlchemyStore(engine)
    app = make_app(store, UserBounceHandler(Account, "mail", bind=engine))
    with caplog.at_level(logging.ERROR):
        deliver(app, "bob@example.com", status=500)
    # The commit's failure too is reported without the driver's message.
    assert "bounce user handler: RaiseException" in caplog.text
    assert "disk on fire" not in caplog.text
    assert all_notices(engine) == []
    [record] = store.records()
    assert record.completed == frozenset() and not record.finished

    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER fail_at_commit ON bounce_event_handlers")
    assert deliver(app, "bob@example.com") == "accepted\n"
    assert [n.user_id for n in all_notices(engine)] == ["3"]
    assert store.records()[0].completed == {NAME}
    engine.dispose()


def test_a_store_on_another_database_records_the_completion_itself(
    engine: sa.Engine, handler: UserBounceHandler, tmp_path: Path
) -> None:
    elsewhere = sa.create_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    create_all(elsewhere)
    store = SQLAlchemyStore(elsewhere)
    event, _ = bounce(email="bob@example.com")
    claim = store.claim(event, lease_seconds=60)
    assert handler(event, Delivery(claim, store, NAME, True)) is False
    assert store.records()[0].completed == frozenset()  # left to the middleware
    assert [n.user_id for n in all_notices(engine)] == ["3"]
    assert deliver(make_app(store, handler), "ann@example.com") == "accepted\n"
    assert store.records()[0].completed == {NAME}
    elsewhere.dispose()


def test_a_delivery_without_a_store(engine: sa.Engine, handler: UserBounceHandler) -> None:
    event, _ = bounce(email="bob@example.com")
    delivery = Delivery(Claim(event.key, ClaimState.NEW), None, NAME, True)
    assert handler(event, delivery) is False
    assert deliver(make_app(None, handler), "ann@example.com") == "accepted\n"
    assert [n.user_id for n in all_notices(engine)] == ["3", "1", "2"]


# Notices ---------------------------------------------------------------------------------


def test_pending_notice_shown_once(engine: sa.Engine, handler: UserBounceHandler) -> None:
    handler(bounce(email="bob@example.com")[0])
    handler(bounce(email="bob@example.com")[0])  # a second event for the same address
    with session_scope(orm.sessionmaker(bind=engine)) as session:
        assert pending_notice(session, 1, "ann@example.com") is None
        notice = pending_notice(session, 3, "BOB@example.com")
        assert notice is not None
        assert notice.render() == DEFAULT_NOTICE.format(
            email="bob@example.com", description=notice.description
        )
        assert mark_shown(session, notice)
        assert not mark_shown(session, notice)  # a concurrent request lost the race
    with orm.Session(engine) as session:
        # Both notices about that address count as shown: the user sees one message.
        assert pending_notice(session, 3, "bob@example.com") is None


def test_pending_notice_folds_unicode(engine: sa.Engine, handler: UserBounceHandler) -> None:
    handler(bounce(email="émile@example.com")[0])
    with session_scope(orm.sessionmaker(bind=engine)) as session:
        notice = pending_notice(session, 5, "Émile@example.com")
        assert notice is not None and notice.email == "émile@example.com"
        assert mark_shown(session, notice)


def test_no_notice_for_a_changed_address(engine: sa.Engine, handler: UserBounceHandler) -> None:
    handler(bounce(email="bob@example.com")[0])
    with orm.Session(engine) as session:
        assert pending_notice(session, 3, "bob@new.example.com") is None
        assert pending_notice(session, 3, "") is None
        assert pending_notice(session, "3", "bob@example.com") is not None


def test_render_with_custom_wording(engine: sa.Engine, handler: UserBounceHandler) -> None:
    handler(bounce(email="bob@example.com", Description="  Mailbox gone.  ")[0])
    with orm.Session(engine) as session:
        notice = pending_notice(session, 3, "bob@example.com")
        assert notice is not None
        assert notice.render("{kind}/{type}: {description}") == "hard/HardBounce: Mailbox gone."
