"""The store contract for batches, continued: concurrent batches, and batches that fail.

Run against every store (``store_case``, see ``tests/store_cases.py``); the
failures against every database store. Overlapping batches in threads claim
each event once; a batch or settlement the database refuses half-way, or a
broken database, leaves nothing written and raises only ``StoreUnavailable``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.store import ClaimState, Settlement
from tests.store_apps import LEASE, make_bounce
from tests.store_cases import DATABASE_NAMES, StoreCase, params
from tests.test_store import run_threads
from tests.test_store_batch import attempts, prepare

# -- concurrency -----------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["same-order", "opposite-order"])
def test_overlapping_batches_in_threads_claim_each_event_once(
    store_case: StoreCase, reverse: bool
) -> None:
    store = store_case.store
    # Four deliveries, each overlapping the next by half; with reverse, every other one
    # lists its events backwards (a database that locks row by row must not deadlock).
    batches = [[make_bounce(n) for n in range(start, start + 40)] for start in (0, 20, 40, 60)]
    if reverse:
        batches = [b[::-1] if i % 2 else b for i, b in enumerate(batches)]
    results = run_threads(
        store_case, 4, lambda n: store.claim_many(batches[n], lease_seconds=LEASE)
    )
    for batch, claims in zip(batches, results, strict=True):
        assert [c.key for c in claims] == [b.key for b in batch]
    claimed = [c for claims in results for c in claims]
    new = Counter(c.key for c in claimed if c.state is ClaimState.NEW)
    assert new == Counter(f"postmark:{n}" for n in range(100))
    assert Counter(c.state for c in claimed) == {ClaimState.NEW: 100, ClaimState.BUSY: 60}
    assert set(attempts(store).values()) == {1}


# -- failures --------------------------------------------------------------------

FAIL = "fail@example.com"


@contextmanager
def failing_writes(case: StoreCase, operation: str) -> Iterator[None]:
    """The database refuses to ``operation`` (INSERT or UPDATE) the event addressed to FAIL."""
    assert case.execute is not None
    table = case.tables[0]
    if "postgresql" in case.name:
        case.execute(
            "CREATE FUNCTION bounce_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.email = '{FAIL}' THEN RAISE EXCEPTION 'injected failure'; END IF; "
            "RETURN NEW; END $$"
        )
        case.execute(
            f"CREATE TRIGGER bounce_test_fail BEFORE {operation} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION bounce_test_fail()"
        )
        drop = [f"DROP TRIGGER bounce_test_fail ON {table}", "DROP FUNCTION bounce_test_fail()"]
    else:
        case.execute(
            f"CREATE TRIGGER bounce_test_fail BEFORE {operation} ON {table} "
            f"WHEN NEW.email = '{FAIL}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        drop = ["DROP TRIGGER bounce_test_fail"]
    try:
        yield
    finally:
        for statement in drop:
            case.execute(statement)


@pytest.mark.parametrize("store_case", params(DATABASE_NAMES), indirect=True)
def test_a_batch_that_fails_half_way_claims_nothing(store_case: StoreCase) -> None:
    store = store_case.store
    prepare(store, make_bounce(1), "released")
    # Sorted or not, the event the database refuses comes last.
    batch = [make_bounce(2), make_bounce(1), make_bounce(3), make_bounce(9, email=FAIL)]
    with failing_writes(store_case, "INSERT"), pytest.raises(StoreUnavailable):
        store.claim_many(batch, lease_seconds=LEASE)
    assert attempts(store) == {"postmark:1": 1}
    claims = store.claim_many(batch, lease_seconds=LEASE)
    assert [c.state for c in claims] == [
        ClaimState.NEW,
        ClaimState.RESUMED,
        ClaimState.NEW,
        ClaimState.NEW,
    ]


@pytest.mark.parametrize("store_case", params(DATABASE_NAMES), indirect=True)
def test_a_settlement_that_fails_half_way_settles_nothing(store_case: StoreCase) -> None:
    store = store_case.store
    batch = [make_bounce(1), make_bounce(2), make_bounce(9, email=FAIL)]
    claims = store.claim_many(batch, lease_seconds=LEASE)
    settlements = [
        Settlement(claims[0], ("a",), True),
        Settlement(claims[1], ("a",), False),
        Settlement(claims[2], ("a",), True),
    ]
    with failing_writes(store_case, "UPDATE"), pytest.raises(StoreUnavailable):
        store.settle_many(settlements)
    records = store.records()
    assert [(r.completed, r.finished) for r in records] == [(frozenset(), False)] * 3
    # Every lease is still held: nothing was released.
    assert [c.state for c in store.claim_many(batch, lease_seconds=LEASE)] == [ClaimState.BUSY] * 3
    store.settle_many(settlements)
    assert [c.state for c in store.claim_many(batch, lease_seconds=LEASE)] == [
        ClaimState.DONE,
        ClaimState.RESUMED,
        ClaimState.DONE,
    ]


@pytest.mark.parametrize("store_case", params(DATABASE_NAMES), indirect=True)
def test_a_broken_database_fails_batches_with_store_unavailable(store_case: StoreCase) -> None:
    store = store_case.store
    address = "secret.person@example.com"
    [claim] = store.claim_many([make_bounce(1, email=address)], lease_seconds=LEASE)
    calls: list[Callable[[], object]] = [
        lambda: store.claim_many([make_bounce(2, email=address)], lease_seconds=LEASE),
        lambda: store.settle_many([Settlement(claim, ("a",), True)]),
    ]
    with store_case.tables_renamed():
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                call()
            # Safe to log: never a value the statement carried.
            assert address not in str(raised.value)
            assert "secret" not in str(raised.value)
    # Repaired: the same store object works again, and the failed calls left nothing.
    assert attempts(store) == {"postmark:1": 1}
    store.settle_many([Settlement(claim, ("a",), True)])
    assert [
        c.state for c in store.claim_many([make_bounce(1), make_bounce(2)], lease_seconds=LEASE)
    ] == [
        ClaimState.DONE,
        ClaimState.NEW,
    ]
