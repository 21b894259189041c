"""PostgresStore beyond the contract suite: URLs and options, its tables, locks and timeouts.

Against the session's real PostgreSQL server (``tests/postgres.py``); the
failures of the server itself are in ``tests/test_postgres_store_outages.py``,
several processes in ``tests/test_postgres_store_processes.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from bounce_middleware import ClaimState, StoreUnavailable, open_store
from bounce_middleware.errors import ConfigurationError, ImproperlyInstalled
from bounce_middleware.postgres_store import PostgresStore
from tests.postgres import PostgresServer
from tests.store_apps import LEASE, make_bounce

PASSWORD = "pg-s3cret-never-shown"


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    """A new empty database."""
    return postgres.url(postgres.create_database("pgstore"))


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(url)
    yield opened
    opened.close()


def query(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql.encode(), params or None)
        return cursor.fetchall() if cursor.description is not None else []


def with_password(url: str) -> str:
    """``url`` with a password (the test server trusts any)."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


# -- URLs and options --------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg", "POSTGRESQL"])
def test_open_store_opens_a_postgres_store_for_each_spelling(url: str, scheme: str) -> None:
    store = open_store(scheme + url[len("postgresql") :])
    assert isinstance(store, PostgresStore)
    try:
        assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.NEW
        assert [r.key for r in store.records()] == ["postmark:1"]
    finally:
        store.close()


def test_the_stores_options_come_from_the_query_and_the_rest_goes_to_libpq(url: str) -> None:
    store = open_store(f"{url}?pool_size=3&timeout=0.75&prepare=off&application_name=bounce-test")
    assert isinstance(store, PostgresStore)
    try:
        assert (store.pool_size, store.timeout, store.prepare) == (3, 0.75, False)
        store.check()
        # The store's connection, as the server sees it: named as the URL says.
        found = query(
            url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bounce-test'"
        )
        assert found == [(1,)]
    finally:
        store.close()


def test_libpq_parameters_reach_the_server_search_path_included(url: str) -> None:
    query(url, "CREATE SCHEMA bounces")
    store = open_store(f"{url}?options=-csearch_path%3Dbounces")
    assert isinstance(store, PostgresStore)
    try:
        store.claim(make_bounce(1), lease_seconds=LEASE)
    finally:
        store.close()
    assert query(url, "SELECT count(*) FROM bounces.bounce_event") == [(1,)]
    assert query(url, "SELECT to_regclass('public.bounce_event')") == [(None,)]


@pytest.mark.parametrize(
    ("query_string", "complaint"),
    [
        ("pool_size=many", "pool_size='many' is not a whole number"),
        ("pool_size=0", "pool_size must be a whole number of connections, 1 or more"),
        ("timeout=soon", "timeout='soon' is not a number of seconds"),
        ("timeout=0", "timeout must be a positive number of seconds"),
        ("timeout=nan", "timeout must be a positive number of seconds"),
        ("prepare=maybe", "prepare='maybe': use on or off"),
        ("sslmode=disable&colour=blue", "unknown connection option(s) colour in the URL"),
        ("timeout", "store URL query is malformed"),
    ],
)
def test_a_wrong_option_is_refused_at_once_without_the_password(
    url: str, query_string: str, complaint: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_store(f"{with_password(url)}?{query_string}")
    assert complaint in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_a_malformed_connection_string_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        PostgresStore(f"host=db password={PASSWORD} dbname")
    assert "neither a postgresql:// URL nor libpq key=value pairs" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_the_password_is_never_shown(url: str, postgres: PostgresServer) -> None:
    store = PostgresStore(with_password(url))
    try:
        store.claim(make_bounce(1), lease_seconds=LEASE)
        assert PASSWORD not in repr(store)
        assert f"dbname={url.rsplit('/', 1)[1]}" in repr(store)
    finally:
        store.close()
    # Nor when the server cannot be reached.
    refused = PostgresStore(f"postgresql://u:{PASSWORD}@127.0.0.1:1/db?connect_timeout=2")
    with pytest.raises(StoreUnavailable) as raised:
        refused.claim(make_bounce(1), lease_seconds=LEASE)
    message = str(raised.value)
    assert message.startswith("PostgreSQL bounce store 127.0.0.1:1/db: claim: OperationalError (")
    assert "refused" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "password",
    ["Xq7left@Zr9right", "Xq7left/Zr9right", "Xq7left?Zr9right", "Xq7left?sslmode=Zr9right"],
)
def test_a_url_whose_password_libpq_would_split_is_refused_unquoted(
    url: str, password: str
) -> None:
    # Unencoded, libpq would cut the password short and read the rest as the host or
    # the database: the store's repr and its 503 messages would show it.
    user, place = url.split("://", 1)[1].split("@", 1)
    raw = f"postgresql://{user}:{password}@{place}"
    openings: list[Callable[[], object]] = [
        lambda: PostgresStore(raw),
        lambda: open_store(raw),
        lambda: open_store(raw.replace("postgresql://", "postgresql+psycopg://", 1)),
    ]
    for opening in openings:
        with pytest.raises(ConfigurationError, match="percent-encode") as raised:
            opening()
        assert "Xq7left" not in str(raised.value) and "Zr9right" not in str(raised.value)
    # Percent-encoded, the same password is taken whole.
    store = PostgresStore(f"postgresql://{user}:{quote(password, safe='')}@{place}")
    try:
        assert "Xq7left" not in repr(store) and "Zr9right" not in repr(store)
        assert f"dbname={url.rsplit('/', 1)[1]}" in repr(store)
        assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.NEW
    finally:
        store.close()


def test_an_at_sign_outside_the_user_info_must_be_encoded_too() -> None:
    # "host/db@name" and "user:pass/word@host/db" cannot be told apart: both are refused,
    # and "db%40name" names that database.
    for raw in (
        "postgresql://db.example/app@archive",
        "postgresql://bob@db.example/app?application_name=me@home",
    ):
        with pytest.raises(ConfigurationError, match="percent-encode"):
            PostgresStore(raw)
    assert "dbname=app@archive" in repr(PostgresStore("postgresql://db.example/app%40archive"))
    assert "host=/run/pg" in repr(PostgresStore("postgresql://bob:pw@/app?host=/run/pg"))


def test_without_psycopg_the_store_names_the_extra_to_install() -> None:
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import bounce_middleware.postgres_store as m\n"  # importable without psycopg
        "from bounce_middleware import open_store\n"
        "from bounce_middleware.errors import ImproperlyInstalled\n"
        "for make in (lambda: m.PostgresStore('postgresql://db/x'),\n"
        "             lambda: open_store('postgresql://db/x')):\n"
        "    try:\n"
        "        make()\n"
        "    except ImproperlyInstalled as exc:\n"
        "        print(exc.extra, '|', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    expected = (
        "postgres | psycopg is not installed; "
        'install it with: pip install "bounce-middleware[postgres]"'
    )
    assert done.stdout.splitlines() == [expected, expected]
    assert issubclass(ImproperlyInstalled, ImportError)


# -- tables ------------------------------------------------------------------------


def test_tables_are_created_on_first_use_with_their_version(url: str) -> None:
    store = PostgresStore(url)
    # Creating the store connects to nothing.
    assert query(url, "SELECT to_regclass('bounce_event')") == [(None,)]
    try:
        store.check()
    finally:
        store.close()
    tables = query(
        url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    assert [name for (name,) in tables] == [
        "bounce_completion",
        "bounce_event",
        "bounce_rejected",
        "bounce_schema",
    ]
    assert query(url, "SELECT version FROM bounce_schema") == [(1,)]


def test_a_database_of_a_newer_version_is_refused(url: str) -> None:
    PostgresStore(url).check()
    query(url, "UPDATE bounce_schema SET version = 99")
    store = PostgresStore(url)
    with pytest.raises(StoreUnavailable, match="schema version 99 is newer than this"):
        store.claim(make_bounce(1), lease_seconds=LEASE)
    assert query(url, "SELECT count(*) FROM bounce_event") == [(0,)]


def test_a_read_only_store_creates_nothing_and_writes_nothing(url: str) -> None:
    reader = open_store(url, read_only=True)
    assert isinstance(reader, PostgresStore)
    assert repr(reader).endswith(", read_only=True)")
    try:
        with pytest.raises(StoreUnavailable, match="has no bounce-middleware tables"):
            reader.records()
        assert query(url, "SELECT to_regclass('bounce_event')") == [(None,)]
        writer = PostgresStore(url)
        writer.complete(writer.claim(make_bounce(1), lease_seconds=LEASE), "a", finished=True)
        writer.close()
        # The tables exist now: the reader lists and counts; the server refuses its writes.
        assert [r.key for r in reader.records()] == ["postmark:1"]
        assert reader.counts().events == 1
        with pytest.raises(StoreUnavailable, match=r"claim: ReadOnlySqlTransaction$"):
            reader.claim(make_bounce(2), lease_seconds=LEASE)
        with pytest.raises(StoreUnavailable, match=r"prune: ReadOnlySqlTransaction$"):
            reader.prune(datetime.now(UTC) + timedelta(days=1), limit=10)
        assert query(url, "SELECT key FROM bounce_event") == [("postmark:1",)]
    finally:
        reader.close()


# -- row locks, never table locks ----------------------------------------------------


def test_an_event_locked_by_another_transaction_holds_up_no_other(url: str) -> None:
    # lock_timeout=1ms: a statement that waited for any lock at all would fail at once,
    # so passing statements are ones that never waited.
    store = PostgresStore(f"{url}?options=-clock_timeout%3D1")
    try:
        store.claim(make_bounce(1), lease_seconds=LEASE)
        with psycopg.connect(url) as holder:
            holder.execute("SELECT * FROM bounce_event WHERE key = 'postmark:1' FOR UPDATE")
            assert store.claim(make_bounce(2), lease_seconds=LEASE).state is ClaimState.NEW
            claims = store.claim_many([make_bounce(3), make_bounce(4)], lease_seconds=LEASE)
            assert [c.state for c in claims] == [ClaimState.NEW] * 2
            assert len(store.records(limit=None)) == 4
            # The locked event itself is waited for, and the wait is refused: the
            # setting is in force.
            with pytest.raises(StoreUnavailable, match=r"claim: LockNotAvailable$"):
                store.claim(make_bounce(1), lease_seconds=LEASE)
            holder.rollback()
    finally:
        store.close()


def test_a_claim_waiting_past_the_timeout_for_a_row_is_unavailable_then_succeeds(
    url: str,
) -> None:
    store = PostgresStore(f"{url}?application_name=bounce-locked", timeout=0.5)

    def backends() -> list[tuple[Any, ...]]:
        return query(
            url, "SELECT pid FROM pg_stat_activity WHERE application_name = 'bounce-locked'"
        )

    try:
        first = store.claim(make_bounce(1), lease_seconds=0)
        before = backends()
        with psycopg.connect(url) as holder:
            holder.execute("SELECT * FROM bounce_event WHERE key = 'postmark:1' FOR UPDATE")
            with pytest.raises(StoreUnavailable, match=r"claim: QueryCanceled$"):
                store.claim(make_bounce(1), lease_seconds=LEASE)
            holder.rollback()
        taken = store.claim(make_bounce(1), lease_seconds=LEASE)
        assert (taken.state, taken.token != first.token) == (ClaimState.RESUMED, True)
        # The connection whose statement was cancelled is still the one in use.
        assert len(before) == 1 and backends() == before
    finally:
        store.close()


def test_threads_beyond_the_pool_wait_for_a_connection_then_give_up(url: str) -> None:
    store = PostgresStore(url, pool_size=1, timeout=1.0)
    errors: list[str] = []
    try:
        store.claim(make_bounce(1), lease_seconds=LEASE)
        with psycopg.connect(url) as holder:
            holder.execute("SELECT * FROM bounce_event WHERE key = 'postmark:1' FOR UPDATE")

            def claim() -> None:
                try:
                    store.claim(make_bounce(1), lease_seconds=0)
                except StoreUnavailable as exc:
                    errors.append(str(exc))

            # Each claim holds the one connection up to 1 s: the third waits longer.
            threads = [threading.Thread(target=claim) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            holder.rollback()
        assert len(errors) == 3
        assert any(e.endswith("claim: QueryCanceled") for e in errors)
        assert any("all 1 connections of this process stayed busy for 1 s" in e for e in errors)
        # Once free, the pool serves again.
        assert store.claim(make_bounce(2), lease_seconds=LEASE).state is ClaimState.NEW
    finally:
        store.close()


def test_connections_are_reused_and_closed_by_close(url: str) -> None:
    name = "bounce-reuse-test"
    store = PostgresStore(f"{url}?application_name={name}", pool_size=4)

    def backends() -> list[int]:
        rows = query(url, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", name)
        return sorted(pid for (pid,) in rows)

    for n in range(20):
        store.claim(make_bounce(n), lease_seconds=LEASE)
    assert len(backends()) == 1
    store.close()
    deadline = time.monotonic() + 10
    while backends() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends() == []
    # Closed is not broken: the next call opens a connection again.
    assert store.claim(make_bounce(99), lease_seconds=LEASE).state is ClaimState.NEW
    store.close()


# -- the command line ----------------------------------------------------------------


def test_the_cli_lists_a_postgres_store_by_its_url(
    url: str, store: PostgresStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from bounce_middleware.cli import main

    claim = store.claim(make_bounce(1, email="Ann@Example.com"), lease_seconds=LEASE)
    store.complete(claim, "notify", finished=True)
    store.claim(make_bounce(2, email="bob@example.com"), lease_seconds=LEASE)
    store.reject("postmark", b"{}", "field ID is missing")
    assert main(["list", "--store", f"{url}?timeout=2", "--unfinished"]) == 0
    listed = capsys.readouterr().out
    assert "postmark:2" in listed and "postmark:1" not in listed
    assert "1 rejected request(s) not yet replayed" in listed
    assert main(["list", "--store", url, "--email", "ann@example.COM"]) == 0
    listed = capsys.readouterr().out
    assert "postmark:1" in listed and "notify" in listed and "postmark:2" not in listed
    # A server that cannot be reached is one line on stderr, not a traceback.
    assert main(["list", "--store", "postgresql://u:pw@127.0.0.1:1/x?connect_timeout=2"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bounce-middleware list: error: cannot read the store: ")
    assert "Connection refused" in error and ":pw" not in error


def test_flat_settings_take_a_postgres_store_url(url: str) -> None:
    # What a Pyramid .ini, Flask's config and Django's settings all go through.
    from bounce_middleware.settings import parse_settings

    options = parse_settings(
        {
            "bounce.path": "/postmark/bounce",
            "bounce.credentials": "postmark:a-long-webhook-password",
            "bounce.store": f"{url}?pool_size=2&timeout=3",
        }
    )
    store = options["store"]
    assert isinstance(store, PostgresStore)
    try:
        assert (store.pool_size, store.timeout) == (2, 3.0)
        assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.NEW
    finally:
        store.close()
