"""Batches on the ORM stores: SQLAlchemyStore, and DjangoStore's prepared SQL and ORM path.

What the batch contract (``tests/test_store_batch.py``) cannot see from outside:
a 1,000-event batch is one transaction, of a few statements where the store
writes in bulk (not one per event); the rows a batch writes are those single
claims write; two overlapping 1,000-event batches listed in opposite orders
never deadlock on PostgreSQL; and ``settle_many`` keeps the lease rules of
``complete``/``release`` after a takeover, including Django's rule inside the
caller's own transaction. On SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from django.db import connections, transaction

from bounce_middleware.adapters.django.models import BounceEvent as DjangoEvent
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.adapters.sqlalchemy import SQLAlchemyStore, create_all, metadata
from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState, Settlement, Store
from tests.store_apps import LEASE, make_bounce
from tests.store_cases import DJANGO_POSTGRESQL

SQLITE = ("sqlalchemy-sqlite", "django-sqlite", "django-sqlite-orm")
POSTGRESQL = ("sqlalchemy-postgresql", "django-postgresql", "django-postgresql-orm")
DJANGO = ("django-sqlite", "django-postgresql", "django-sqlite-orm", "django-postgresql-orm")
#: At most this many statements per call on a 1,000-event batch: a few for the stores
#: that write the whole batch at once, a few dozen on Django's ORM path (Django's SQLite
#: backend allows 999 parameters to a statement: 66 rows to a bulk INSERT); never one
#: or more per event.
FEW = 8
FEW_ON_THE_ORM_PATH = 40
SIZE = 1000


def _alias(name: str) -> str:
    return DJANGO_POSTGRESQL if "postgresql" in name else "default"


def cases(*names: str) -> list[Any]:
    """``names`` as params of the ``orm`` fixture, with the Django database marks."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.django_db(transaction=True, databases=[_alias(name)])
            if name.startswith("django-")
            else (),
            id=name,
        )
        for name in names
    ]


@dataclass
class Counted:
    """What one call did to the database."""

    statements: int = 0
    #: Distinct transactions the statements ran in (committed or not).
    transactions: int = 0
    commits: int = 0


@dataclass
class Case:
    """One ORM store on one database, and a way to count what a call runs there."""

    name: str
    store: Store
    counting: Callable[[], Any]
    end_thread: Callable[[], None] = lambda: None
    close: Callable[[], None] = lambda: None
    rows: Callable[[], list[dict[str, Any]]] = field(default=lambda: [])
    #: Run one SQL statement (no parameters) on the store's database.
    execute: Callable[[str], None] = lambda sql: None
    table: str = ""


@pytest.fixture
def orm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    """The store case named by the param, on a fresh database."""
    name: str = request.param
    case = _sqlalchemy(name, tmp_path, request) if name.startswith("sqlalchemy-") else _django(name)
    yield case
    case.close()


def _sqlalchemy(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    if name == "sqlalchemy-sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'bounces.sqlite3'}")
        create_all(engine)
    else:
        engine = sa.create_engine(request.getfixturevalue("sqlalchemy_postgresql_url"))
        create_all(engine)
        with engine.begin() as conn:
            tables = ", ".join(table.name for table in metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    @contextmanager
    def counting() -> Iterator[Counted]:
        counted = Counted()

        def statement(*args: Any) -> None:
            counted.statements += 1

        def begin(*args: Any) -> None:
            counted.transactions += 1

        def commit(*args: Any) -> None:
            counted.commits += 1

        listeners = [("before_cursor_execute", statement), ("begin", begin), ("commit", commit)]
        for event, listener in listeners:
            sa.event.listen(engine, event, listener)
        try:
            yield counted
        finally:
            for event, listener in listeners:
                sa.event.remove(engine, event, listener)

    def rows() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            query = sa.select(metadata.tables["bounce_events"]).order_by(sa.text("id"))
            return [dict(row._mapping) for row in conn.execute(query)]

    def execute(sql: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))

    return Case(
        name,
        SQLAlchemyStore(engine),
        counting,
        close=engine.dispose,
        rows=rows,
        execute=execute,
        table="bounce_events",
    )


def _django(name: str) -> Case:
    alias = _alias(name)
    connection = connections[alias]

    @contextmanager
    def counting() -> Iterator[Counted]:
        counted = Counted()
        # A statement inside an atomic block belongs to its outermost block's transaction;
        # one outside any runs in a transaction of its own (autocommit).
        outermost: list[object] = []

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            if sql == "BEGIN":  # Django's SQLite backend opening the atomic block's transaction
                return execute(sql, params, many, context)
            counted.statements += 1
            block = connection.atomic_blocks[0] if connection.in_atomic_block else object()
            if not any(block is seen for seen in outermost):
                outermost.append(block)
            return execute(sql, params, many, context)

        assert not connection.in_atomic_block
        with connection.execute_wrapper(wrapper):
            yield counted
        counted.transactions = counted.commits = len(outermost)

    def rows() -> list[dict[str, Any]]:
        return [dict(row) for row in DjangoEvent.objects.using(alias).order_by("id").values()]

    store = DjangoStore(using=alias, prepared=not name.endswith("-orm"))

    def execute(sql: str) -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute(sql)

    return Case(
        name,
        store,
        counting,
        end_thread=connections.close_all,
        rows=rows,
        execute=execute,
        table=DjangoEvent._meta.db_table,
    )


def events(start: int, stop: int) -> list[Bounce]:
    return [make_bounce(n, email=f"user{n}@example.com") for n in range(start, stop)]


# -- one transaction per batch ------------------------------------------------------


@pytest.mark.parametrize("orm", cases(*SQLITE, *POSTGRESQL), indirect=True)
def test_a_thousand_event_batch_is_one_transaction_each_way(orm: Case) -> None:
    store = orm.store
    batch = events(0, SIZE)
    with orm.counting() as claimed:
        claims = store.claim_many(batch, lease_seconds=LEASE)
    assert [(c.key, c.state) for c in claims] == [(b.key, ClaimState.NEW) for b in batch]
    assert len({c.token for c in claims}) == SIZE
    # Even events finish with both handlers; odd ones had "a" fail after "b" succeeded.
    settlements = [
        Settlement(c, ("a", "b") if n % 2 == 0 else ("b",), n % 2 == 0)
        for n, c in enumerate(claims)
    ]
    with orm.counting() as settled:
        store.settle_many(settlements)
    with orm.counting() as reclaimed:
        again = store.claim_many(batch, lease_seconds=LEASE)
    assert [(c.state, c.completed) for c in again] == [
        (ClaimState.DONE, frozenset({"a", "b"}))
        if n % 2 == 0
        else (ClaimState.RESUMED, frozenset({"b"}))
        for n in range(SIZE)
    ]
    for counted in (claimed, settled, reclaimed):
        assert (counted.transactions, counted.commits) == (1, 1)
    few = FEW_ON_THE_ORM_PATH if orm.name.endswith("-orm") else FEW
    assert claimed.statements <= few
    assert settled.statements <= few
    assert reclaimed.statements <= few
    records = store.records(limit=None)
    assert len(records) == SIZE
    assert Counter(r.attempts for r in records) == {1: SIZE // 2, 2: SIZE // 2}


@pytest.mark.parametrize("orm", cases(*SQLITE, *POSTGRESQL), indirect=True)
def test_an_empty_batch_runs_nothing(orm: Case) -> None:
    with orm.counting() as counted:
        assert orm.store.claim_many([], lease_seconds=LEASE) == []
    assert counted.statements == 0


# -- the rows a batch writes ----------------------------------------------------------


@pytest.mark.parametrize("orm", cases(*SQLITE, *POSTGRESQL), indirect=True)
def test_a_batch_writes_the_rows_single_claims_write(orm: Case) -> None:
    def bounce(n: int) -> Bounce:
        # NFKC and case folding both change this address; NULs are kept as U+FFFD.
        return Bounce(
            provider="postmark",
            id=f"{n}",
            email="ＡＮＮ.ﬁsh\x00@Example.COM",
            kind=BounceKind.SOFT,
            type="Soft\x00Bounce",
            description="mailbox full\x00",
            body=b"\xff\x00 as received",
        )

    single = orm.store.claim(bounce(1), lease_seconds=LEASE)
    [batched] = orm.store.claim_many([bounce(2)], lease_seconds=LEASE)
    first, second = orm.rows()
    differ = {"id", "key", "lease_token", "lease_until", "lease_expires", "received_at"}
    assert {k: v for k, v in first.items() if k not in differ} == {
        k: v for k, v in second.items() if k not in differ
    }
    assert (first["key"], second["key"]) == ("postmark:1", "postmark:2")
    assert (first["lease_token"], second["lease_token"]) == (single.token, batched.token)
    assert first["email_key"] == "ann.fish\ufffd@example.com"
    assert bytes(second["body"]) == b"\xff\x00 as received"


# -- concurrency ------------------------------------------------------------------------


def _in_threads(case: Case, work: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = work[n]()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            case.end_thread()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    return results


@contextmanager
def slow_insert(case: Case, key: str) -> Iterator[None]:
    """On PostgreSQL, inserting the event ``key`` takes a while: two batches inserting it
    are then surely both half-way through their INSERTs at once."""
    if "postgresql" not in case.name:
        yield
        return
    case.execute(
        "CREATE FUNCTION bounce_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.key = '{key}' THEN PERFORM pg_sleep(0.3); END IF; RETURN NEW; END $$"
    )
    case.execute(
        f"CREATE TRIGGER bounce_test_slow BEFORE INSERT ON {case.table} "
        "FOR EACH ROW EXECUTE FUNCTION bounce_test_slow()"
    )
    try:
        yield
    finally:
        case.execute(f"DROP TRIGGER bounce_test_slow ON {case.table}")
        case.execute("DROP FUNCTION bounce_test_slow()")


@pytest.mark.parametrize("orm", cases(*POSTGRESQL, *SQLITE), indirect=True)
def test_overlapping_thousand_event_batches_in_opposite_orders_claim_each_event_once(
    orm: Case,
) -> None:
    store = orm.store
    for start in range(0, 2 * 1500, 1500):  # two rounds, each on events of its own
        forward = events(start, start + SIZE)
        backward = events(start + 500, start + 1500)[::-1]
        # Written in the order given, the forward batch would wait in the middle of the
        # overlap while the backward one went on down to it: a deadlock.
        with slow_insert(orm, f"postmark:{start + 750}"):
            results = _in_threads(
                orm,
                [partial(store.claim_many, b, lease_seconds=LEASE) for b in (forward, backward)],
            )
        for batch, claims in zip((forward, backward), results, strict=True):
            assert [c.key for c in claims] == [b.key for b in batch]
        states = Counter((c.key, c.state) for claims in results for c in claims)
        new = Counter(key for key, state in states if state is ClaimState.NEW)
        assert len(new) == 1500 and set(new.values()) == {1}
        assert sum(n for (_, state), n in states.items() if state is ClaimState.BUSY) == 500
    records = store.records(limit=None)
    assert len(records) == 3000 and {r.attempts for r in records} == {1}


@pytest.mark.parametrize("orm", cases(*POSTGRESQL), indirect=True)
def test_overlapping_settlements_and_takeovers_in_threads(orm: Case) -> None:
    # Two deliveries whose leases expired settle while two others take their events over,
    # all four on the same 400 events in different orders: nothing deadlocks or is lost.
    store = orm.store
    batch = events(0, 400)
    stale = store.claim_many(batch, lease_seconds=0)
    staler = [Settlement(c, ("a",), False) for c in stale]
    backward = batch[::-1]
    results = _in_threads(
        orm,
        [
            lambda: store.settle_many(staler[:200]),
            lambda: store.settle_many(staler[200:][::-1]),
            lambda: store.claim_many(batch, lease_seconds=LEASE),
            lambda: store.claim_many(backward, lease_seconds=LEASE),
        ],
    )
    taken = Counter(
        c.key for claims in results[2:] for c in claims if c.state is ClaimState.RESUMED
    )
    assert len(taken) == 400 and set(taken.values()) == {1}
    # Completions are recorded whoever holds the lease (complete() does so outside a
    # transaction): every event has "a" now.
    assert {r.completed for r in store.records(limit=None)} == {frozenset({"a"})}
    assert {r.attempts for r in store.records(limit=None)} == {2}


# -- settle_many's lease rules ----------------------------------------------------------


@pytest.mark.parametrize("orm", cases(*SQLITE, *POSTGRESQL), indirect=True)
def test_a_stale_settlement_records_its_completions_and_keeps_the_successors_lease(
    orm: Case,
) -> None:
    store = orm.store
    [slow] = store.claim_many([make_bounce(1)], lease_seconds=0)
    [successor] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    assert successor.state is ClaimState.RESUMED
    # As complete() outside a transaction: the handler ran, its success is recorded.
    store.settle_many([Settlement(slow, ("a",), False)])
    [record] = store.records()
    assert (record.completed, record.finished) == (frozenset({"a"}), False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY
    store.settle_many([Settlement(successor, ("b",), True)])
    done = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a", "b"}))


@pytest.mark.parametrize("orm", cases(*SQLITE, *POSTGRESQL), indirect=True)
def test_settling_a_busy_claim_leaves_the_holders_lease(orm: Case) -> None:
    store = orm.store
    [holder] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    [busy] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    assert (busy.state, busy.token) == (ClaimState.BUSY, "")
    store.settle_many([Settlement(busy, (), False)])
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY
    store.settle_many([Settlement(holder, (), False)])
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.RESUMED


@pytest.mark.parametrize("orm", cases(*DJANGO), indirect=True)
def test_inside_the_callers_transaction_a_taken_over_settlement_raises(orm: Case) -> None:
    store = orm.store
    assert isinstance(store, DjangoStore)
    [slow] = store.claim_many([make_bounce(1)], lease_seconds=0)
    [successor] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    # As complete() there: the caller's transaction must roll back, the successor runs it.
    with pytest.raises(StoreUnavailable, match="taken over"), transaction.atomic(using=store.db):
        store.settle_many([Settlement(slow, ("a",), True)])
    [record] = store.records()
    assert (record.completed, record.finished) == (frozenset(), False)
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY
    # The successor's settlement commits with the caller's transaction, or not at all.
    with pytest.raises(RuntimeError), transaction.atomic(using=store.db):
        store.settle_many([Settlement(successor, ("a",), True)])
        raise RuntimeError("the caller's own write failed")
    assert store.records()[0].completed == frozenset()
    with transaction.atomic(using=store.db):
        store.settle_many([Settlement(successor, ("a",), True)])
    done = store.claim(make_bounce(1), lease_seconds=LEASE)
    assert (done.state, done.completed) == (ClaimState.DONE, frozenset({"a"}))


@pytest.mark.parametrize("orm", cases(*DJANGO), indirect=True)
def test_a_batch_claimed_inside_the_callers_transaction_rolls_back_with_it(orm: Case) -> None:
    store = orm.store
    assert isinstance(store, DjangoStore)
    store.claim(make_bounce(1), lease_seconds=LEASE)
    with pytest.raises(RuntimeError), transaction.atomic(using=store.db):
        claims: list[Claim] = store.claim_many(events(0, 3), lease_seconds=LEASE)
        assert [c.state for c in claims] == [ClaimState.NEW, ClaimState.BUSY, ClaimState.NEW]
        raise RuntimeError("the caller's own write failed")
    assert [r.key for r in store.records()] == ["postmark:1"]
