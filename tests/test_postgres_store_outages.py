"""PostgresStore when the server goes away: stopped, restarted, a session ended mid-statement.

Each test runs a PostgreSQL server of its own (``tests/postgres_store_server.py``)
and stops it for real (a fast shutdown, as an administrator's restart does).
Whatever happens, the store raises only ``StoreUnavailable`` (answered 503 with
``Retry-After``), and the same store object works again once the server is back.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from webtest import TestApp

from bounce_middleware import Bounce, ClaimState, StoreUnavailable
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.testing import postmark_bounce
from tests.postgres import PostgresServer
from tests.postgres_store_server import private_server, restart, stop
from tests.store_apps import AUTH, LEASE, PATH, make_app, make_bounce, post

ADDRESS = "secret.person@example.com"


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with pytest.MonkeyPatch.context() as patch, private_server(patch) as running:
        yield running


@pytest.fixture
def server(own_server: PostgresServer) -> Iterator[PostgresServer]:
    """The module's own server, running; left running for the next test."""
    yield own_server
    assert own_server.process is not None
    if own_server.process.poll() is not None:
        restart(own_server)


@pytest.fixture
def url(server: PostgresServer) -> str:
    return server.url(server.create_database("outage"))


def test_a_restarted_server_costs_no_failed_call(server: PostgresServer, url: str) -> None:
    store = PostgresStore(url, pool_size=4)
    try:
        # Four idle connections, all ended by the restart.
        threads = [
            threading.Thread(
                target=store.claim, args=(make_bounce(n),), kwargs={"lease_seconds": 9}
            )
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        stop(server)
        restart(server)
        for n in range(8, 16):
            assert store.claim(make_bounce(n), lease_seconds=LEASE).state is ClaimState.NEW
        assert len(store.records(limit=None)) == 16
    finally:
        store.close()


def test_every_call_on_a_stopped_server_is_unavailable_and_says_nothing_it_carried(
    server: PostgresServer, url: str
) -> None:
    store = PostgresStore(url)
    try:
        claim = store.claim(make_bounce(1, email=ADDRESS), lease_seconds=LEASE)
        stop(server)
        calls = [
            lambda: store.claim(make_bounce(2, email=ADDRESS), lease_seconds=LEASE),
            lambda: store.claim_many([make_bounce(3, email=ADDRESS)], lease_seconds=LEASE),
            lambda: store.complete(claim, "a"),
            lambda: store.complete(claim, "b", finished=True),
            lambda: store.release(claim, finished=True),
            lambda: store.records(email=ADDRESS),
            lambda: store.reject("postmark", ADDRESS.encode(), "field ID is missing"),
            lambda: store.resolve("postmark:rejected:sha256:00"),
            store.check,
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                call()
            message = str(raised.value)
            assert message.startswith(f"PostgreSQL bounce store 127.0.0.1:{server.port}/")
            assert "secret" not in message
        restart(server)
        store.complete(claim, "a", finished=True)
        assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE
        assert [r.key for r in store.records()] == ["postmark:1"]
    finally:
        store.close()


def test_a_session_ended_mid_statement_is_unavailable_and_the_next_call_reconnects(
    url: str,
) -> None:
    store = PostgresStore(f"{url}?application_name=bounce-ended", timeout=30)
    try:
        store.claim(make_bounce(1), lease_seconds=0)
        outcome: list[BaseException | ClaimState] = []

        def claim() -> None:
            try:
                outcome.append(store.claim(make_bounce(1), lease_seconds=LEASE).state)
            except BaseException as exc:  # reported below
                outcome.append(exc)

        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("BEGIN")
            admin.execute("SELECT * FROM bounce_event FOR UPDATE")
            waiting = threading.Thread(target=claim)
            waiting.start()
            with psycopg.connect(url, autocommit=True) as other:
                pid = _wait_for_lock_waiter(other, "bounce-ended")
                # What a failover or an administrator does to the store's session.
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            waiting.join(timeout=30)
            admin.execute("ROLLBACK")
        [error] = outcome
        assert isinstance(error, StoreUnavailable)
        assert str(error).endswith("claim: AdminShutdown")
        assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.RESUMED
    finally:
        store.close()


def _wait_for_lock_waiter(conn: psycopg.Connection[Any], name: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock'",
            (name,),
        ).fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError("the store's claim never waited for the row lock")


def test_the_middleware_answers_503_while_the_server_is_down_and_200_after(
    server: PostgresServer, url: str
) -> None:
    applied: list[str] = []
    stopped = False

    def apply(bounce: Bounce) -> None:
        nonlocal stopped
        applied.append(bounce.key)
        if bounce.email == "mid-event@example.com" and not stopped:
            # The server goes down while the handler runs: its completion cannot be kept.
            stopped = True
            stop(server)

    store = PostgresStore(url)
    app = make_app(store, apply, retry_after=7, lease_seconds=1.0)
    try:
        before = postmark_bounce(ID=1)
        post(app, before, 200)
        stop(server)
        down = post(app, postmark_bounce(ID=2), 503)
        assert down.headers["Retry-After"] == "7"
        assert applied == ["postmark:1"]  # nothing runs without its claim
        restart(server)
        post(app, postmark_bounce(ID=2), 200)
        post(app, before, 200)
        assert applied == ["postmark:1", "postmark:2"]

        mid = postmark_bounce(ID=3, Email="mid-event@example.com")
        post(app, mid, 503)
        restart(server)
        # The claim taken before the outage holds for its lease; then a redelivery resumes.
        answers = []
        for _ in range(100):
            answers.append(deliver(app, mid))
            if answers[-1] == 200:
                break
            time.sleep(0.1)
        assert set(answers[:-1]) <= {503} and answers[-1] == 200
        # At least once: the handler whose completion was lost ran again, as documented.
        assert Counter(applied) == {"postmark:1": 1, "postmark:2": 1, "postmark:3": 2}
        by_key = {r.key: r for r in store.records()}
        assert all(r.finished for r in by_key.values())
        assert by_key["postmark:3"].attempts == 2
    finally:
        store.close()


def deliver(app: TestApp, payload: dict[str, Any]) -> int:
    """Deliver ``payload`` as Postmark does, whatever the answer; its status."""
    headers = {**AUTH, "Content-Type": "application/json"}
    status: int = app.post(PATH, json.dumps(payload), headers=headers, status="*").status_int
    return status
