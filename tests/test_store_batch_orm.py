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

from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from django.db import transaction

from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState, Settlement
from tests.store_apps import LEASE, make_bounce
from tests.store_orm_cases import (
    DJANGO,
    POSTGRESQL,
    SQLITE,
    Case,
    build,
    cases,
    in_threads,
    slow_insert,
)

#: At most this many statements per call on a 1,000-event batch: a few for the stores
#: that write the whole batch at once, a few dozen on Django's ORM path (Django's SQLite
#: backend allows 999 parameters to a statement: 66 rows to a bulk INSERT); never one
#: or more per event.
FEW = 8
FEW_ON_THE_ORM_PATH = 40
SIZE = 1000


@pytest.fixture
def orm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    """The store case named by the param, on a fresh database."""
    case = build(request.param, tmp_path, request)
    yield case
    case.close()


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
            results = in_threads(
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
def test_overlapping_settlements_and_takeoversin_threads(orm: Case) -> None:
    # Two deliveries whose leases expired settle while two others take their events over,
    # all four on the same 400 events in different orders: nothing deadlocks or is lost.
    store = orm.store
    batch = events(0, 400)
    stale = store.claim_many(batch, lease_seconds=0)
    staler = [Settlement(c, ("a",), False) for c in stale]
    backward = batch[::-1]
    results = in_threads(
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
