"""SQLAlchemyStore on SQLite and on a real PostgreSQL server; the shared contract suite
(tests/test_store.py) runs against it too. The user handler: test_sqlalchemy_users.py."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.schema import CreateTable
from webtest import TestApp

from bounce_middleware import BounceKind, BounceMiddleware, ClaimState, Store, StoreUnavailable
from bounce_middleware.adapters.sqlalchemy import (
    SQLAlchemyStore,
    UserBounceHandler,
    create_all,
    metadata,
    sessions,
)
from bounce_middleware.providers.postmark import parse_postmark
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.postgres import PostgresServer
from tests.sqlalchemy_db import DATABASES, Account, Base, all_notices, bounce, database_url
from tests.sqlalchemy_db import engine as engine  # noqa: F401 - fixtures
from tests.sqlalchemy_db import url as url  # noqa: F401


@pytest.fixture
def store(engine: sa.Engine) -> SQLAlchemyStore:
    return SQLAlchemyStore(engine)


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


def test_completing_the_last_handler_finishes_the_event(store: SQLAlchemyStore) -> None:
    event, _ = bounce()
    claim = store.claim(event, lease_seconds=60)
    store.complete(claim, "a")
    store.complete(claim, "b", finished=True)
    done = store.claim(event, lease_seconds=60)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a", "b"}))


def test_expired_lease_is_taken_over(store: SQLAlchemyStore) -> None:
    event, _ = bounce()
    crashed = store.claim(event, lease_seconds=0)
    retry = store.claim(event, lease_seconds=60)
    assert retry.state is ClaimState.RESUMED
    # The crashed delivery comes back late: it must not end the new holder's lease.
    store.release(crashed, finished=False)
    assert store.claim(event, lease_seconds=60).state is ClaimState.BUSY
    # Nor when it finishes: the event is finished, the successor's lease stays its own.
    store.complete(crashed, "late", finished=True)
    assert store.claim(event, lease_seconds=60).state is ClaimState.DONE


def test_records_filters_compare_folded_addresses(store: SQLAlchemyStore) -> None:
    for kind, email in [
        ("HardBounce", "a@x.com"),
        ("SoftBounce", "Émile@x.com"),
        ("HardBounce", "émile@X.com"),
    ]:
        claim = store.claim(bounce(kind, email=email)[0], lease_seconds=60)
        store.release(claim, finished=email != "a@x.com")
    assert [r.email for r in store.records()] == ["émile@X.com", "Émile@x.com", "a@x.com"]
    assert [r.email for r in store.records(kind=BounceKind.SOFT)] == ["Émile@x.com"]
    # Unicode case folding on every database (SQLite's lower() folds ASCII only).
    assert [r.email for r in store.records(email="ÉMILE@x.COM")] == ["émile@X.com", "Émile@x.com"]
    assert [r.email for r in store.records(unfinished=True)] == ["a@x.com"]
    assert len(store.records(limit=1)) == 1
    assert len(store.records(limit=None)) == 3
    assert store.records(limit=-1) == []


def test_long_values_and_nul_characters_are_recorded(store: SQLAlchemyStore) -> None:
    # Version 0.1's String(64)/String(320) turned these into DataError on PostgreSQL:
    # a 503 on every retry, then a lost event.
    long_email = "x" * 3000 + "@example.com"
    event, body = bounce(Type="T" * 500, email=long_email, Description="d" * 10_000)
    assert store.claim(event, lease_seconds=60).state is ClaimState.NEW
    nul, _ = bounce(email="nul\x00@example.com", Description="a\x00b", Tag="t")
    claim = store.claim(nul, lease_seconds=60)
    assert claim.state is ClaimState.NEW
    store.complete(claim, "h", finished=True)
    assert store.claim(nul, lease_seconds=60).state is ClaimState.DONE
    by_key = {r.key: r for r in store.records()}
    assert by_key[event.key].email == long_email and by_key[event.key].type == "T" * 500
    assert by_key[event.key].body == body
    assert by_key[nul.key].email == "nul\ufffd@example.com"
    assert [r.key for r in store.records(email="NUL\x00@example.com")] == [nul.key]
    assert [r.key for r in store.records(email=long_email.upper())] == [event.key]


def test_rejected_requests_are_kept_once_and_resolved(store: SQLAlchemyStore) -> None:
    claim = store.claim(bounce()[0], lease_seconds=60)
    store.release(claim, finished=True)
    key = store.reject("postmark", b'{"not": "a bounce"}', "RecordType is missing")
    assert key.startswith("postmark:rejected:sha256:")
    assert store.reject("postmark", b'{"not": "a bounce"}', "another reason") == key
    other = store.reject("postmark", b"\x00\xff binary", "not UTF-8\x00")

    [newest, first] = store.records(rejected=True)
    assert (first.key, first.reason, first.body, first.email, first.type) == (
        key,
        "RecordType is missing",
        b'{"not": "a bounce"}',
        "",
        "",
    )
    assert first.rejected and first.kind is BounceKind.UNKNOWN and not first.finished
    assert (newest.key, newest.body, newest.reason) == (
        other,
        b"\x00\xff binary",
        "not UTF-8\ufffd",
    )
    assert [r.rejected for r in store.records()] == [False]  # accepted events only

    store.resolve(key)
    store.resolve("postmark:rejected:sha256:unknown")  # harmless
    assert [r.key for r in store.records(rejected=True, unfinished=True)] == [other]
    assert [r.finished for r in store.records(rejected=True)] == [False, True]
    assert store.records(rejected=True, kind=BounceKind.HARD) == []
    assert store.records(rejected=True, email="a@b.c") == []
    assert len(store.records(rejected=True, kind=BounceKind.UNKNOWN, limit=1)) == 1


def test_a_new_event_is_recorded_by_one_statement(
    engine: sa.Engine, store: SQLAlchemyStore
) -> None:
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert store.claim(bounce()[0], lease_seconds=60).state is ClaimState.NEW
    # The unique key decides between concurrent deliveries: no SELECT first.
    [insert] = statements
    assert insert.startswith("INSERT INTO bounce_events")
    assert insert.replace('"', "").endswith("ON CONFLICT (key) DO NOTHING")


def test_without_on_conflict_a_savepoint_decides(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Databases without INSERT ... ON CONFLICT: the unique key still decides, no check first."""
    monkeypatch.setattr(sessions, "_ON_CONFLICT_INSERTS", {})
    engine = sa.create_engine(database_url("postgresql", tmp_path, postgres))
    create_all(engine)
    store = SQLAlchemyStore(engine)
    event, _ = bounce()
    first = store.claim(event, lease_seconds=60)
    assert first.state is ClaimState.NEW
    assert store.claim(event, lease_seconds=60).state is ClaimState.BUSY
    store.complete(first, "a")
    store.complete(first, "a", finished=True)
    done = store.claim(event, lease_seconds=60)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a"}))
    key = store.reject("postmark", b"x", "why")
    assert store.reject("postmark", b"x", "why") == key
    assert len(store.records(rejected=True)) == 1
    engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
def test_store_unavailable_without_tables(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    postgres = request.getfixturevalue("postgres") if database == "postgresql" else None
    engine = sa.create_engine(database_url(database, tmp_path, postgres))
    store = SQLAlchemyStore(engine)
    event, _ = bounce()
    with pytest.raises(StoreUnavailable, match=r"bounce store \(SQLAlchemy\): claim: "):
        store.claim(event, lease_seconds=60)
    with pytest.raises(StoreUnavailable):
        store.records()
    with pytest.raises(StoreUnavailable):
        store.reject("postmark", b"{}", "no")
    engine.dispose()


def test_store_failures_are_logged_without_sql_parameters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    store = SQLAlchemyStore(engine)
    app = TestApp(
        BounceMiddleware(
            lambda environ, start_response: [],
            path="/hook",
            credentials=["postmark:a-long-enough-password"],
            store=store,
        )
    )
    with caplog.at_level(logging.DEBUG):
        response = app.post_json(
            "/hook",
            postmark_bounce(email="secret-user@example.com"),
            headers=auth_headers("postmark", "a-long-enough-password"),
            status=503,
        )
    assert response.headers["Retry-After"]
    assert "store unavailable" in caplog.text
    # A driver's chained error quotes the statement's parameters: never in the logs.
    assert "secret-user" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)
    engine.dispose()


def test_store_accepts_a_sessionmaker(engine: sa.Engine) -> None:
    store = SQLAlchemyStore(orm.sessionmaker(bind=engine))
    assert store.claim(bounce()[0], lease_seconds=60).state is ClaimState.NEW


def test_writes_through_only_sessions_on_its_database(engine: sa.Engine, tmp_path: Path) -> None:
    store = SQLAlchemyStore(engine)
    twin = sa.create_engine(engine.url)  # another engine on the same database
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    with orm.Session(engine) as same, orm.Session(twin) as alike, orm.Session(other) as apart:
        assert store.writes_through(same) and store.writes_through(alike)
        assert not store.writes_through(apart)
    with orm.Session() as unbound:
        assert not store.writes_through(unbound)
    memory = SQLAlchemyStore(orm.sessionmaker(bind=sa.create_engine("sqlite://")))
    with orm.Session(sa.create_engine("sqlite://")) as private:
        assert not memory.writes_through(private)  # two in-memory databases
    twin.dispose()
    other.dispose()


def _claim_in_child(url: str, payload: bytes, start: Any, results: Any) -> None:
    engine = sa.create_engine(url)
    [event] = parse_postmark(payload).events
    start.wait()
    results.put(SQLAlchemyStore(engine).claim(event, lease_seconds=60).state.value)
    engine.dispose()


def test_one_claim_wins_across_processes(url: str) -> None:
    engine = sa.create_engine(url)
    create_all(engine)
    engine.dispose()
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


def test_metadata_is_independent_of_the_app(engine: sa.Engine) -> None:
    assert set(metadata.tables) == {
        "bounce_events",
        "bounce_event_handlers",
        "bounce_rejections",
        "bounce_notices",
    }
    assert not set(metadata.tables) & set(Base.metadata.tables)
    create_all(engine)  # idempotent


def test_schema_has_unbounded_text_and_no_index_on_addresses() -> None:
    ddl = "\n".join(
        str(CreateTable(table).compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
        for table in metadata.sorted_tables
    )
    assert "VARCHAR" not in ddl.replace("VARCHAR(32)", "")  # only the lease token is bounded
    indexed = {
        column.name
        for table in metadata.tables.values()
        for i in table.indexes
        for column in i.columns
    }
    assert not indexed & {"email", "email_key"}
    # MySQL indexes TEXT only with a prefix length: indexed keys stay VARCHAR there.
    dialect = mysql.dialect()
    events = str(CreateTable(metadata.tables["bounce_events"]).compile(dialect=dialect))
    assert "`key` VARCHAR(255)" in events and "email TEXT" in events


def test_middleware_with_the_store_and_the_user_handler(engine: sa.Engine) -> None:
    def downstream(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    handler = UserBounceHandler(Account, "mail", bind=engine)
    middleware = BounceMiddleware(
        downstream,
        path="/postmark/bounce",
        credentials=["postmark:a-long-enough-password"],
        store=SQLAlchemyStore(engine),
    )
    middleware.add_handler(handler, kinds=handler.kinds)
    app = TestApp(middleware)
    payload = postmark_bounce(email="bob@example.com")
    headers = auth_headers("postmark", "a-long-enough-password")
    assert app.post_json("/postmark/bounce", payload, headers=headers).text == "accepted\n"
    assert app.post_json("/postmark/bounce", payload, headers=headers).text == (
        "already processed\n"
    )
    assert [n.user_id for n in all_notices(engine)] == ["3"]
    assert app.get("/").text == "app"
