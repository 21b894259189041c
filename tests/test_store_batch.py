"""The store contract for batches: ``claim_many`` and ``settle_many``, against every store.

Each test runs once per store and database (``store_case``, see
``tests/store_cases.py``). A batch must decide each event exactly as
``claim()`` would, in the order given, and write all of it or none of it;
``settle_many`` records completions and ends claims with the lease rules of
``complete``/``release``. Concurrent and failing batches are in
``tests/test_store_batch_failures.py``, SQLite's one-transaction proof in
``tests/test_sqlite_batch.py``.
"""

from __future__ import annotations

import pytest

from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState, Settlement, Store
from tests.store_apps import LEASE, make_bounce
from tests.store_cases import StoreCase, params


def prepare(store: Store, bounce: Bounce, state: str) -> Claim | None:
    """Leave ``bounce`` stored as ``state`` says, handler ``a`` completed; the claim held."""
    if state == "new":
        return None
    claim = store.claim(bounce, lease_seconds=0 if state == "expired" else LEASE)
    store.complete(claim, "a")
    if state in ("done", "released"):
        store.release(claim, finished=state == "done")
    return claim


#: Each state a stored event may be in, and what the next claim of it must say.
EXPECTED = {
    "new": ClaimState.NEW,
    "done": ClaimState.DONE,
    "released": ClaimState.RESUMED,
    "busy": ClaimState.BUSY,
    "expired": ClaimState.RESUMED,
}
# Deliberately not grouped by state, nor sorted by key.
ORDER = ("released", "new", "done", "expired", "busy")


def attempts(store: Store) -> dict[str, int]:
    return {r.key: r.attempts for r in store.records(limit=None)}


def test_a_batch_claims_each_event_as_claim_would_in_the_order_given(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    batch = [make_bounce(f"batch-{state}") for state in ORDER]
    singles = [make_bounce(f"single-{state}") for state in ORDER]
    for state, bounce, twin in zip(ORDER, batch, singles, strict=True):
        prepare(store, bounce, state)
        prepare(store, twin, state)
    claims = store.claim_many(batch, lease_seconds=LEASE)
    one_by_one = [store.claim(twin, lease_seconds=LEASE) for twin in singles]
    assert [c.key for c in claims] == [b.key for b in batch]
    assert [c.state for c in claims] == [EXPECTED[state] for state in ORDER]
    assert [(c.state, c.completed, bool(c.token)) for c in claims] == [
        (c.state, c.completed, bool(c.token)) for c in one_by_one
    ]
    tried = attempts(store)
    assert [tried[b.key] for b in batch] == [tried[t.key] for t in singles] == [2, 1, 1, 2, 1]


def test_new_events_are_recorded_each_with_its_own_token(store_case: StoreCase) -> None:
    store = store_case.store
    kinds = (BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT)
    batch = [
        make_bounce(n, email=f"user{n}@Example.com", kind=kinds[n % 3], body=b"\xff\x00%d" % n)
        for n in (7, 3, 5)
    ]
    claims = store.claim_many(batch, lease_seconds=LEASE)
    assert [(c.key, c.state, c.completed) for c in claims] == [
        (b.key, ClaimState.NEW, frozenset()) for b in batch
    ]
    assert all(c.token for c in claims)
    assert len({c.token for c in claims}) == 3
    by_key = {r.key: r for r in store.records()}
    for bounce in batch:
        record = by_key[bounce.key]
        assert (record.email, record.kind, record.type, record.body) == (
            bounce.email,
            bounce.kind,
            "HardBounce",
            bounce.body,
        )
        assert (record.attempts, record.finished, record.completed) == (1, False, frozenset())
    assert [r.key for r in store.records(email="USER3@example.com")] == ["postmark:3"]
    # Each claim holds its lease: another delivery now waits.
    again = store.claim_many(batch, lease_seconds=LEASE)
    assert [c.state for c in again] == [ClaimState.BUSY] * 3
    assert [c.token for c in again] == [""] * 3


def test_a_batch_is_listed_as_if_claimed_one_by_one(store_case: StoreCase) -> None:
    store = store_case.store
    store.claim(make_bounce(1), lease_seconds=LEASE)
    store.claim_many([make_bounce(n) for n in (4, 2, 3)], lease_seconds=LEASE)
    # Newest first: the batch's last event is the newest, all newer than what came before.
    assert [r.key for r in store.records()] == [
        "postmark:3",
        "postmark:2",
        "postmark:4",
        "postmark:1",
    ]


def test_finished_events_are_done_and_keep_their_completions(store_case: StoreCase) -> None:
    store = store_case.store
    for n in (1, 2):
        prepare(store, make_bounce(n), "done")
    claims = store.claim_many([make_bounce(2), make_bounce(1)], lease_seconds=LEASE)
    assert [(c.key, c.state, c.completed, c.token) for c in claims] == [
        ("postmark:2", ClaimState.DONE, frozenset({"a"}), ""),
        ("postmark:1", ClaimState.DONE, frozenset({"a"}), ""),
    ]
    assert not any(c.runs_handlers for c in claims)
    assert attempts(store) == {"postmark:1": 1, "postmark:2": 1}


def test_released_unfinished_events_resume_with_their_completed_handlers(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    first = prepare(store, make_bounce(1), "released")
    assert first is not None
    [resumed] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    assert (resumed.state, resumed.completed) == (ClaimState.RESUMED, frozenset({"a"}))
    assert resumed.token and resumed.token != first.token
    assert attempts(store) == {"postmark:1": 2}
    # The resumed claim holds a new lease.
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY


def test_an_event_leased_to_another_delivery_is_busy(store_case: StoreCase) -> None:
    store = store_case.store
    holder = prepare(store, make_bounce(1), "busy")
    assert holder is not None
    [busy, new] = store.claim_many([make_bounce(1), make_bounce(2)], lease_seconds=LEASE)
    assert (busy.state, busy.completed, busy.token) == (ClaimState.BUSY, frozenset({"a"}), "")
    assert new.state is ClaimState.NEW
    assert attempts(store) == {"postmark:1": 1, "postmark:2": 1}
    # The holder's lease was left alone: once it releases, the event resumes.
    store.release(holder, finished=False)
    [after] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    assert after.state is ClaimState.RESUMED


def test_an_expired_lease_is_taken_over_by_a_batch(store_case: StoreCase) -> None:
    store = store_case.store
    # A worker that died while running handlers never releases; its lease runs out.
    crashed = store.claim_many([make_bounce(1)], lease_seconds=0)[0]
    store.complete(crashed, "a")
    [taken] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    assert (taken.state, taken.completed) == (ClaimState.RESUMED, frozenset({"a"}))
    assert taken.token and taken.token != crashed.token
    assert attempts(store) == {"postmark:1": 2}


def test_empty_batches_change_nothing(store_case: StoreCase) -> None:
    store = store_case.store
    assert store.claim_many([], lease_seconds=LEASE) == []
    store.settle_many([])
    assert store.records() == []
    claim = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.settle_many(())
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY
    store.release(claim, finished=False)
    assert attempts(store) == {"postmark:1": 1}


# -- anything claim() accepts, a batch accepts -------------------------------


def test_values_claim_accepts_are_accepted_in_a_batch(store_case: StoreCase) -> None:
    store = store_case.store
    long_email = "".join(f"{n:x}" for n in range(2000))[:3000] + "@Example.COM"
    batch = [
        Bounce(provider="postmark", id="9" * 3999 + "1", email="a@example.com",
               kind=BounceKind.HARD, type="HardBounce", body=b"{}"),
        Bounce(provider="postmark", id="nul\x00id", email="ann\x00@example.com",
               kind=BounceKind.SOFT, type="Soft\x00Bounce", description="before\x00after",
               body=b'{"x": "\\u0000"}'),
        Bounce(provider="postmark", id="2", email=long_email, kind=BounceKind.UNKNOWN,
               type="ProviderSpecificBounceTypeNobodyExpected" * 5, description="d" * 100_000,
               body=b"\xff" * 70_000),
        Bounce(provider="postmark", id="3", email="", kind=BounceKind.UNSUBSCRIBE,
               type="Unsubscribe", body=b"{}"),
    ]  # fmt: skip
    claims = store.claim_many(batch, lease_seconds=LEASE)
    assert [(c.key, c.state) for c in claims] == [(b.key, ClaimState.NEW) for b in batch]
    store.settle_many([Settlement(c, ("tests.handler",), True) for c in claims])
    again = store.claim_many(batch, lease_seconds=LEASE)
    assert [(c.state, c.completed) for c in again] == [
        (ClaimState.DONE, frozenset({"tests.handler"}))
    ] * 4
    by_email = {r.email: r for r in store.records(limit=None)}
    assert by_email["ann\ufffd@example.com"].type == "Soft\ufffdBounce"
    assert by_email[long_email].type == batch[2].type
    assert by_email[long_email].body == batch[2].body
    assert by_email[""].kind is BounceKind.UNSUBSCRIBE
    assert [r.email for r in store.records(email=long_email.upper())] == [long_email]
    assert [r.email for r in store.records(email="ANN\x00@example.com")] == [
        "ann\ufffd@example.com"
    ]


def test_keys_a_store_keeps_alike_are_claimed_as_claim_would(store_case: StoreCase) -> None:
    # Distinct keys to the core, but a NUL is stored as U+FFFD: a database store keeps
    # these as one event, and then the second claim finds the first's lease.
    store = store_case.store
    batch = store.claim_many([make_bounce("x\x00"), make_bounce("x\ufffd")], lease_seconds=LEASE)
    singles = [store.claim(make_bounce(i), lease_seconds=LEASE) for i in ("y\x00", "y\ufffd")]
    assert [c.key for c in batch] == ["postmark:x\x00", "postmark:x\ufffd"]
    assert [(c.state, bool(c.token)) for c in batch] == [(c.state, bool(c.token)) for c in singles]
    assert batch[0].state is ClaimState.NEW


# -- settle_many ---------------------------------------------------------------


def test_settle_many_records_completions_and_finishes_events(store_case: StoreCase) -> None:
    store = store_case.store
    claims = store.claim_many([make_bounce(n) for n in (1, 2, 3)], lease_seconds=LEASE)
    store.settle_many(
        [
            Settlement(claims[0], ("a", "b"), True),
            Settlement(claims[1], ("a",), False),
            Settlement(claims[2], (), False),
        ]
    )
    by_key = {r.key: r for r in store.records()}
    assert (by_key["postmark:1"].completed, by_key["postmark:1"].finished) == (
        frozenset({"a", "b"}),
        True,
    )
    assert (by_key["postmark:2"].completed, by_key["postmark:2"].finished) == (
        frozenset({"a"}),
        False,
    )
    assert (by_key["postmark:3"].completed, by_key["postmark:3"].finished) == (frozenset(), False)
    assert [r.key for r in store.records(unfinished=True)] == ["postmark:3", "postmark:2"]
    # Unfinished settlements freed their leases: the next claim resumes them.
    again = store.claim_many([make_bounce(n) for n in (1, 2, 3)], lease_seconds=LEASE)
    assert [(c.state, c.completed) for c in again] == [
        (ClaimState.DONE, frozenset({"a", "b"})),
        (ClaimState.RESUMED, frozenset({"a"})),
        (ClaimState.RESUMED, frozenset()),
    ]
    assert attempts(store) == {"postmark:1": 1, "postmark:2": 2, "postmark:3": 2}


def test_settling_adds_to_what_earlier_deliveries_completed(store_case: StoreCase) -> None:
    store = store_case.store
    prepare(store, make_bounce(1), "released")
    [resumed] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    # "a" again is harmless, as completing twice is.
    store.settle_many([Settlement(resumed, ("a", "b"), True)])
    [record] = store.records()
    assert (record.completed, record.finished, record.attempts) == (frozenset({"a", "b"}), True, 2)


def test_a_stale_settlement_does_not_release_its_successors_lease(store_case: StoreCase) -> None:
    store = store_case.store
    [slow] = store.claim_many([make_bounce(1)], lease_seconds=0)
    [successor] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    assert successor.state is ClaimState.RESUMED
    store.settle_many([Settlement(slow, (), False)])
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.BUSY
    store.settle_many([Settlement(successor, (), False)])
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.RESUMED


def test_a_stale_settlement_finishing_leaves_the_successors_lease(store_case: StoreCase) -> None:
    store = store_case.store
    [slow] = store.claim_many([make_bounce(1)], lease_seconds=0)
    [successor] = store.claim_many([make_bounce(1)], lease_seconds=LEASE)
    store.settle_many([Settlement(slow, ("a",), True)])
    # The event is finished (its last handler completed), and nobody else's lease was touched.
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE
    store.settle_many([Settlement(successor, (), False)])
    assert store.claim(make_bounce(1), lease_seconds=LEASE).state is ClaimState.DONE


@pytest.mark.parametrize("store_case", params(), indirect=True)
def test_settling_a_stale_claim_beside_the_current_holder_frees_the_event(
    store_case: StoreCase,
) -> None:
    # A batch may carry two settlements of one event: a delivery whose lease ran out, and
    # the one that took it over. Whatever their order, the holder's release wins.
    store = store_case.store
    for event_id, stale_first in ((1, True), (2, False)):
        [slow] = store.claim_many([make_bounce(event_id)], lease_seconds=0)
        [holder] = store.claim_many([make_bounce(event_id)], lease_seconds=LEASE)
        assert holder.state is ClaimState.RESUMED
        pair = [Settlement(slow, ("a",), False), Settlement(holder, ("b",), False)]
        store.settle_many(pair if stale_first else pair[::-1])
        again = store.claim(make_bounce(event_id), lease_seconds=LEASE)
        assert (again.state, again.completed) == (ClaimState.RESUMED, frozenset({"a", "b"}))
