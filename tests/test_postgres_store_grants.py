"""PostgresStore under a role with the least privileges the README names, on the real server.

The tables' owner creates them (the first start); the application then runs as a
role granted SELECT, INSERT, UPDATE and DELETE on the tables and USAGE on the
sequence ``bounce_event_id_seq``, which a batch claim draws its ids from (in the
batch's order, while its rows are written in key order), and a listing role gets
SELECT alone. Without the sequence grant, the 503 says which grant is missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bounce_middleware import ClaimState, StoreUnavailable, open_store
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.retention import prune_before
from bounce_middleware.store import Settlement
from tests.postgres import PostgresServer
from tests.store_apps import LEASE, make_bounce

TABLES = "bounce_event, bounce_completion, bounce_rejected, bounce_schema"


class Roles:
    """Login roles made for one test on one database, dropped afterwards."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        self.server = server
        self.database = database
        self.admin = server.url(database)
        self.names: list[str] = []

    def make(self, *grants: str) -> str:
        """A new role with ``grants`` (``{role}`` stands for its name); returns its URL."""
        name = f"bounce_role_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {name} LOGIN".encode())
            self.names.append(name)
            for grant in grants:
                conn.execute(grant.format(role=name).encode())
        return f"postgresql://{name}@{self.server.host}:{self.server.port}/{self.database}"

    def drop(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.names:
                conn.execute(f"DROP OWNED BY {name}".encode())
                conn.execute(f"DROP ROLE {name}".encode())


@pytest.fixture
def roles(postgres: PostgresServer) -> Iterator[Roles]:
    database = postgres.create_database("grants")
    owner = PostgresStore(postgres.url(database))
    owner.check()  # the tables are created by their owner, once
    owner.close()
    made = Roles(postgres, database)
    yield made
    made.drop()


def test_the_documented_grants_are_enough_for_everything(roles: Roles) -> None:
    url = roles.make(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON " + TABLES + " TO {role}",
        "GRANT USAGE ON SEQUENCE bounce_event_id_seq TO {role}",
    )
    store = PostgresStore(url)
    try:
        single = store.claim(make_bounce(1), lease_seconds=LEASE)
        store.complete(single, "a")
        store.release(single, finished=False)
        claims = store.claim_many([make_bounce(n) for n in (3, 2, 1)], lease_seconds=LEASE)
        assert [c.state for c in claims] == [ClaimState.NEW, ClaimState.NEW, ClaimState.RESUMED]
        store.settle_many([Settlement(c, ("a",), True) for c in claims])
        store.resolve(store.reject("postmark", b"{}", "field ID is missing"))
        assert [r.key for r in store.records()] == ["postmark:2", "postmark:3", "postmark:1"]
        assert store.counts().unfinished == 0
        assert prune_before(store, datetime.now(UTC) + timedelta(days=1)) == 3
    finally:
        store.close()


def test_without_the_sequence_grant_the_error_names_it(roles: Roles) -> None:
    url = roles.make("GRANT SELECT, INSERT, UPDATE, DELETE ON " + TABLES + " TO {role}")
    store = PostgresStore(url)
    try:
        # One event at a time takes the column's default: no sequence privilege needed.
        assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.NEW
        with pytest.raises(StoreUnavailable) as raised:
            store.claim_many([make_bounce(2), make_bounce(3)], lease_seconds=LEASE)
        message = str(raised.value)
        assert "claim_many: InsufficientPrivilege (permission denied for sequence " in message
        assert message.endswith(
            "the role needs SELECT, INSERT, UPDATE and DELETE on the tables bounce_event, "
            "bounce_completion, bounce_rejected and bounce_schema, and USAGE on the sequence "
            "bounce_event_id_seq (a batch claim draws its ids from it)"
        )
        assert [r.key for r in store.records()] == ["postmark:1"]  # the batch wrote nothing
    finally:
        store.close()


def test_select_alone_is_enough_to_list_and_count(roles: Roles) -> None:
    url = roles.make("GRANT SELECT ON " + TABLES + " TO {role}")
    reader = open_store(url, read_only=True)
    assert isinstance(reader, PostgresStore)
    try:
        assert reader.records() == []
        assert reader.counts().events == 0
    finally:
        reader.close()
