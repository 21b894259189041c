"""The shared SQLAlchemy store, user handler and notice helpers, with plain SQLAlchemy 2.x."""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from webtest import TestApp

from bounce_middleware import (
    Bounce,
    BounceKind,
    BounceMiddleware,
    ClaimState,
    ConfigurationError,
    Store,
    StoreUnavailable,
)
from bounce_middleware.adapters.sqlalchemy import (
    DEFAULT_NOTICE,
    Notice,
    SQLAlchemyStore,
    UserBounceHandler,
    create_all,
    mark_shown,
    metadata,
    pending_notice,
    session_scope,
)
from bounce_middleware.providers import PostmarkProvider
from bounce_middleware.testing import auth_headers, postmark_bounce


class Base(orm.DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    pk: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    login: orm.Mapped[str] = orm.mapped_column(sa.String(50), unique=True)
    mail: orm.Mapped[str | None] = orm.mapped_column(sa.String(320))


def bounce(type: str = "HardBounce", **fields: Any) -> tuple[Bounce, bytes]:
    body = json.dumps(postmark_bounce(type, **fields)).encode()
    parsed = PostmarkProvider().parse(body)
    assert isinstance(parsed, Bounce)
    return parsed, body


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    Base.metadata.create_all(engine)
    create_all(engine)
    with orm.Session(engine) as session:
        session.add_all(
            [
                Account(login="ann", mail="Ann@Example.com"),
                Account(login="ann2", mail="ann@example.COM"),
                Account(login="bob", mail="bob@example.com"),
                Account(login="nomail", mail=None),
            ]
        )
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> SQLAlchemyStore:
    return SQLAlchemyStore(engine)


@pytest.fixture
def handler(engine: sa.Engine) -> UserBounceHandler:
    return UserBounceHandler(Account, "mail", bind=engine)


def all_notices(engine: sa.Engine) -> list[Notice]:
    with orm.Session(engine) as session:
        return list(session.scalars(sa.select(Notice).order_by(Notice.id)))


# The store ------------------------------------------------------------------


def test_store_follows_the_protocol(store: SQLAlchemyStore) -> None:
    assert isinstance(store, Store)


def test_claim_lifecycle(store: SQLAlchemyStore) -> None:
    event, body = bounce(email="ann@example.com")
    first = store.claim(event, lease_seconds=60)
    assert first.state is ClaimState.NEW and first.token
    assert store.claim(event, lease_seconds=60).state is ClaimState.BUSY

    store.complete(first, "a")
    store.complete(first, "a")  # recording twice is harmless
    store.release(first, finished=False)

    again = store.claim(event, lease_seconds=60)
    assert (again.state, again.completed) == (ClaimState.RESUMED, frozenset({"a"}))
    assert again.token != first.token
    store.complete(again, "b")
    store.release(again, finished=True)

    done = store.claim(event, lease_seconds=60)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a", "b"}))
    [record] = store.records()
    assert record.finished and record.attempts == 2 and record.body == body
    assert record.received_at.tzinfo is not None


def test_completing_the_last_handler_can_finish_the_event(store: SQLAlchemyStore) -> None:
    event, _ = bounce()
    claim = store.claim(event, lease_seconds=60)
    store.complete(claim, "a")
    store.complete(claim, "b", finished=True)
    done = store.claim(event, lease_seconds=60)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a", "b"}))


def test_expired_lease_is_taken_over(store: SQLAlchemyStore) -> None:
    event, body = bounce()
    crashed = store.claim(event, lease_seconds=0)
    retry = store.claim(event, lease_seconds=60)
    assert retry.state is ClaimState.RESUMED
    # The crashed delivery comes back late: it must not end the new holder's lease.
    store.release(crashed, finished=False)
    assert store.claim(event, lease_seconds=60).state is ClaimState.BUSY


def test_records_filters(store: SQLAlchemyStore) -> None:
    for kind, email in [
        ("HardBounce", "a@x.com"),
        ("SoftBounce", "B@x.com"),
        ("HardBounce", "b@x.com"),
    ]:
        event, body = bounce(kind, email=email)
        claim = store.claim(event, lease_seconds=60)
        store.release(claim, finished=email != "a@x.com")
    assert [r.email for r in store.records()] == ["b@x.com", "B@x.com", "a@x.com"]
    assert [r.email for r in store.records(kind=BounceKind.SOFT)] == ["B@x.com"]
    assert [r.email for r in store.records(email="b@X.com")] == ["b@x.com", "B@x.com"]
    assert [r.email for r in store.records(unfinished=True)] == ["a@x.com"]
    assert len(store.records(limit=1)) == 1
    assert len(store.records(limit=None)) == 3


def test_store_unavailable_without_tables(tmp_path: Path) -> None:
    store = SQLAlchemyStore(sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    event, body = bounce()
    with pytest.raises(StoreUnavailable):
        store.claim(event, lease_seconds=60)
    with pytest.raises(StoreUnavailable):
        store.records()


def test_store_failures_are_logged_without_sql_parameters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLAlchemyStore(sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    app = TestApp(
        BounceMiddleware(
            lambda environ, start_response: [],
            path="/hook",
            credentials=["postmark:s3cret"],
            store=store,
        )
    )
    with caplog.at_level(logging.DEBUG):
        response = app.post_json(
            "/hook",
            postmark_bounce(email="secret-user@example.com"),
            headers=auth_headers("postmark", "s3cret"),
            status=503,
        )
    assert response.headers["Retry-After"]
    logged = "\n".join(caplog.text.splitlines())
    assert "store unavailable" in logged
    # A driver's chained error quotes the statement's parameters: never in the logs.
    assert "secret-user" not in logged
    assert all(record.exc_info is None for record in caplog.records)


def test_store_accepts_a_sessionmaker(engine: sa.Engine) -> None:
    store = SQLAlchemyStore(orm.sessionmaker(bind=engine))
    event, body = bounce()
    assert store.claim(event, lease_seconds=60).state is ClaimState.NEW


def _claim_in_child(url: str, payload: bytes, start: Any, results: Any) -> None:
    engine = sa.create_engine(url)
    event = PostmarkProvider().parse(payload)
    assert isinstance(event, Bounce)
    start.wait()
    results.put(SQLAlchemyStore(engine).claim(event, lease_seconds=60).state.value)


def test_one_claim_wins_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    create_all(sa.create_engine(url))
    _, body = bounce()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    children = [
        context.Process(target=_claim_in_child, args=(url, body, start, results)) for _ in range(4)
    ]
    for child in children:
        child.start()
    start.set()
    states = sorted(results.get(timeout=60) for _ in children)
    for child in children:
        child.join(timeout=60)
    assert states == ["busy", "busy", "busy", "new"]


# The user handler -----------------------------------------------------------


def test_handler_records_every_matching_user_case_insensitively(
    engine: sa.Engine, handler: UserBounceHandler
) -> None:
    event, _ = bounce(email="ANN@example.com")
    handler(event)
    handler(event)  # a redelivery adds nothing
    found = all_notices(engine)
    assert [(n.user_id, n.email, n.kind, n.type) for n in found] == [
        ("1", "ANN@example.com", "hard", "HardBounce"),
        ("2", "ANN@example.com", "hard", "HardBounce"),
    ]
    assert found[0].description == event.description
    assert found[0].created_at is not None and found[0].shown_at is None


def test_handler_ignores_unknown_addresses_and_other_kinds(
    engine: sa.Engine, handler: UserBounceHandler
) -> None:
    handler(bounce(email="nobody@example.com")[0])
    handler(bounce("SoftBounce", email="bob@example.com")[0])
    handler(bounce("SpamComplaint", email="bob@example.com")[0])
    assert all_notices(engine) == []


def test_handler_kinds_and_id_attribute(engine: sa.Engine) -> None:
    handler = UserBounceHandler(
        Account, "mail", bind=engine, kinds=["complaint"], id_attribute="login"
    )
    assert handler.kinds == {BounceKind.COMPLAINT}
    handler(bounce("SpamComplaint", email="bob@example.com")[0])
    handler(bounce(email="bob@example.com")[0])
    assert [(n.user_id, n.kind) for n in all_notices(engine)] == [("bob", "complaint")]


def test_handler_with_an_injected_unit_of_work(engine: sa.Engine) -> None:
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


def test_handler_is_atomic(engine: sa.Engine, handler: UserBounceHandler) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TRIGGER no_second BEFORE INSERT ON bounce_notices "
                "WHEN NEW.user_id = '2' BEGIN SELECT RAISE(ABORT, 'no'); END"
            )
        )
    with pytest.raises(sa.exc.IntegrityError):
        handler(bounce(email="ann@example.com")[0])
    assert all_notices(engine) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"email_attribute": "email"}, "no mapped attribute 'email'"),
        ({"email_attribute": "mail"}, "needs unit_of_work"),
        ({"email_attribute": "mail", "kinds": ["bogus"]}, "kinds"),
    ],
)
def test_handler_configuration_errors(
    engine: sa.Engine, kwargs: dict[str, Any], message: str
) -> None:
    if "kinds" in kwargs:
        kwargs["bind"] = engine
    with pytest.raises(ConfigurationError, match=message):
        UserBounceHandler(Account, **kwargs)


# Notices ----------------------------------------------------------------------


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


def test_metadata_is_independent_of_the_app(engine: sa.Engine) -> None:
    assert set(metadata.tables) == {"bounce_events", "bounce_event_handlers", "bounce_notices"}
    assert not set(metadata.tables) & set(Base.metadata.tables)
    create_all(engine)  # idempotent


# Everything together, behind the middleware, without any framework ----------------


def test_middleware_with_sqlalchemy_store_and_handler(engine: sa.Engine) -> None:
    def downstream(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    handler = UserBounceHandler(Account, "mail", bind=engine)
    middleware = BounceMiddleware(
        downstream,
        path="/postmark/bounce",
        credentials=["postmark:s3cret"],
        store=SQLAlchemyStore(engine),
    )
    middleware.add_handler(handler, kinds=handler.kinds)
    app = TestApp(middleware)
    payload = postmark_bounce(email="bob@example.com")
    headers = auth_headers("postmark", "s3cret")
    assert app.post_json("/postmark/bounce", payload, headers=headers).text == "accepted\n"
    assert app.post_json("/postmark/bounce", payload, headers=headers).text == (
        "already processed\n"
    )
    assert [n.user_id for n in all_notices(engine)] == ["3"]
    assert app.get("/").text == "app"
