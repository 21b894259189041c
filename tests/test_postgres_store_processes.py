"""PostgresStore shared by several processes, each with its own store and connections.

Separate processes (``spawn``: nothing shared but the database) stand for
separate hosts. Whatever order and form their claims take, exactly one claim of
each event runs its handlers while its lease holds; once a crashed process's
lease expires, exactly one takes each event over. A forked child never uses
or ends its parent's connections.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys
import textwrap
import time
from collections import Counter
from multiprocessing.synchronize import Barrier
from typing import Any

import psycopg

from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.store import ClaimState
from tests.postgres import PostgresServer
from tests.store_apps import make_bounce

PROCESSES = 6
SPAWN = multiprocessing.get_context("spawn")

Outcome = list[tuple[str, str, tuple[str, ...]]]


def _claims(store: PostgresStore, keys: list[int], batch: int, lease: float) -> Outcome:
    """Claim ``keys`` one by one (``batch`` 1) or ``batch`` at a time; what each claim said."""
    claims = []
    if batch == 1:
        claims = [store.claim(make_bounce(n), lease_seconds=lease) for n in keys]
    else:
        for start in range(0, len(keys), batch):
            bounces = [make_bounce(n) for n in keys[start : start + batch]]
            claims += store.claim_many(bounces, lease_seconds=lease)
    return [(c.key, c.state.value, tuple(sorted(c.completed))) for c in claims]


def _worker(
    url: str, barrier: Barrier, rounds: list[tuple[list[int], int]], queue: Any, seed: int
) -> None:
    """Wait at the barrier before each round, claim its keys in a shuffled order, report."""
    shuffle = random.Random(seed).shuffle
    outcomes: list[Outcome] = []
    try:
        store = PostgresStore(url)
        for keys, batch in rounds:
            keys = list(keys)
            shuffle(keys)
            barrier.wait(timeout=120)
            outcomes.append(_claims(store, keys, batch, lease=60.0))
        store.close()
        queue.put((seed, outcomes))
    except BaseException as exc:  # reported to the test, not lost in the process
        queue.put((seed, repr(exc)))


def _crash(url: str, keys: list[int], lease: float) -> None:
    """Claim ``keys``, complete handler ``a`` of each, and die without releasing anything."""
    store = PostgresStore(url)
    claims = store.claim_many([make_bounce(n) for n in keys], lease_seconds=lease)
    for claim in claims:
        store.complete(claim, "a")
    os._exit(0)  # no release, no clean-up: what the OOM killer leaves


def _run_workers(url: str, rounds: list[tuple[list[int], int]], between: Any = None) -> list[Any]:
    """``PROCESSES`` workers doing ``rounds``; ``between(n)`` runs in the test before round n."""
    barrier = SPAWN.Barrier(PROCESSES + 1)
    queue = SPAWN.Queue()
    workers = [
        SPAWN.Process(target=_worker, args=(url, barrier, rounds, queue, seed))
        for seed in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        for n in range(len(rounds)):
            if between is not None:
                between(n)
            barrier.wait(timeout=120)
        results = [queue.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=60)
    errors = [outcome for _, outcome in results if isinstance(outcome, str)]
    assert errors == []
    return [outcome for _, outcome in sorted(results)]


def states_by_key(outcomes: list[Outcome]) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        for key, state, _ in outcome:
            found.setdefault(key, Counter())[state] += 1
    return found


def test_processes_claiming_the_same_events_record_each_once(postgres: PostgresServer) -> None:
    # A new database: the processes also race to create the tables on first use.
    url = postgres.url(postgres.create_database("processes"))
    singles, batches = list(range(40)), list(range(40, 100))
    results = _run_workers(url, [(singles, 1), (batches, 10)])
    for round_ in (0, 1):
        found = states_by_key([result[round_] for result in results])
        assert len(found) == (40 if round_ == 0 else 60)
        assert all(c == {"new": 1, "busy": PROCESSES - 1} for c in found.values()), found
    store = PostgresStore(url)
    try:
        records = store.records(limit=None)
    finally:
        store.close()
    assert sorted(r.key for r in records) == sorted(f"postmark:{n}" for n in range(100))
    assert {r.attempts for r in records} == {1}


def test_a_crashed_processs_leases_hold_then_exactly_one_process_takes_each_over(
    postgres: PostgresServer,
) -> None:
    url = postgres.url(postgres.create_database("takeover"))
    PostgresStore(url).check()
    keys = list(range(12))

    def between(n: int) -> None:
        if n == 0:
            # The workers are up: a process claims everything, and dies holding it.
            crash = SPAWN.Process(target=_crash, args=(url, keys, 3.0))
            crash.start()
            crash.join(timeout=60)
            assert crash.exitcode == 0
        else:
            with psycopg.connect(url) as conn:
                while True:
                    (expired,) = conn.execute(
                        "SELECT bool_and(lease_expires <= now()) FROM bounce_event"
                    ).fetchone() or (None,)
                    conn.rollback()
                    if expired:
                        break
                    time.sleep(0.05)

    results = _run_workers(url, [(keys, 1), (keys, 4)], between)
    held = states_by_key([result[0] for result in results])
    assert all(c == {"busy": PROCESSES} for c in held.values()), held
    taken = states_by_key([result[1] for result in results])
    assert all(c == {"resumed": 1, "busy": PROCESSES - 1} for c in taken.values()), taken
    # Every claim, busy or resumed, knew what the crashed process had completed.
    assert {completed for result in results for _, _, completed in result[1]} == {("a",)}
    store = PostgresStore(url)
    try:
        claims = store.claim_many([make_bounce(n) for n in keys], lease_seconds=60)
        assert {c.state for c in claims} == {ClaimState.BUSY}
        assert {r.attempts for r in store.records(limit=None)} == {2}
    finally:
        store.close()


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import psycopg
    from bounce_middleware.postgres_store import PostgresStore
    from tests.store_apps import make_bounce

    url, name = sys.argv[1], sys.argv[2]
    store = PostgresStore(f"{url}?application_name={name}")

    def backends():
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchall()
        return sorted(pid for (pid,) in rows)

    store.claim(make_bounce(1), lease_seconds=60)
    [parents] = backends()
    child = os.fork()
    if child == 0:
        # The child's first call opens its own connection; leaving runs every finalizer.
        store.claim(make_bounce(2), lease_seconds=60)
        assert len(backends()) == 2, backends()
        sys.exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection outlived the child, and is still the one it uses.
    store.claim(make_bounce(3), lease_seconds=60)
    assert backends() == [parents], (backends(), parents)
    assert [r.key for r in store.records()] == ["postmark:3", "postmark:2", "postmark:1"]
    store.close()
    print("ok")
    """
)


def test_a_forked_child_never_uses_nor_ends_its_parents_connection(
    postgres: PostgresServer,
) -> None:
    url = postgres.url(postgres.create_database("fork"))
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, url, "bounce-fork-test"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
