"""Several application servers on one PostgreSQL database, one of them killed mid-run.

Three independent gunicorn servers (each its own master, two worker processes
of four threads, on its own port: three hosts) run ``tests/scale_app.py``: the
middleware on one PostgreSQL database with two handlers writing to that
database, the shipped ``UserBounceHandler`` (a notice per user, unique per
event and user) and the README's own transactional kind (a row per
application, no unique key to hide a second one).

A provider (``tests/scale_servers.py``) delivers distinct Postmark events
spread over the three, 12 at a time on kept-alive connections, while duplicate
storms send one slow event to all three servers at once, 30 copies each; every
delivery is retried on the next server, with backoff, until it is answered
200. A third of the way in, one server is sent slow events and, once some are
half done on it (the first handler committed, the second inside its
transaction), its master and workers are killed with SIGKILL.

- On the ``SQLAlchemyStore`` (10,000 events), whose ``complete(...,
  session=...)`` joins the handlers' transactions: every delivery eventually
  200, every event recorded once and finished, each handler's effect
  committed exactly once, the half-done events taken over by the survivors.
- On a ``PostgresStore`` in the same database (3,000 events): the same, except
  that a handler's writes cannot commit with its completion (the store has no
  transaction to join), so it is applied at least once: a second application
  only of an event the killed server held, which the survivors claimed again.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from bounce_middleware.adapters.sqlalchemy import Notice, SQLAlchemyStore
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.store import Record, Store
from bounce_middleware.testing import postmark_bounce
from tests.postgres import PostgresServer
from tests.promise_app import percentile
from tests.scale_app import HANDLERS, Effect, create_database
from tests.scale_servers import Attempt, Gunicorn, Provider, running

EVENTS = {"sqlalchemy": 10_000, "postgres": 3_000}
CLIENTS = 12
STORMS = 10
COPIES = 10  # per server, all at once
DOOMED = 6  # slow events sent to the server about to be killed
IN_FLIGHT = 2  # of which at least this many are half done when it is killed
SLOW = 2.0  # seconds the ``slow`` events' second handler holds its transaction
LEASE = 5.0  # seconds a killed server's claims block the others
WORKERS, THREADS = 2, 4  # per server
VICTIM = 1
LOADS = [f"user{n}@scale.example" for n in range(max(EVENTS.values()))]
STORMED = [f"slow-storm{n}@scale.example" for n in range(STORMS)]
HALF_DONE = [f"slow-doomed{n}@scale.example" for n in range(DOOMED)]


def event(email: str) -> tuple[str, bytes]:
    payload = postmark_bounce(email=email)
    return f"postmark:{payload['ID']}", json.dumps(payload).encode()


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    url = postgres.url(postgres.create_database("scale"), driver="postgresql+psycopg")
    create_database(url, LOADS + STORMED + HALF_DONE)
    return url


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=list(EVENTS))
def store(request: pytest.FixtureRequest) -> str:
    """Which store the servers share: ``sqlalchemy`` or ``postgres``."""
    return str(request.param)


@pytest.fixture
def servers(url: str, store: str, tmp_path: Path) -> Iterator[list[Gunicorn]]:
    env = {
        "BOUNCE_SCALE_DB": url,
        "BOUNCE_SCALE_STORE": store,
        "BOUNCE_LEASE_SECONDS": str(LEASE),
        "BOUNCE_SLOW_SECONDS": str(SLOW),
    }
    names = ["host-a", "host-b", "host-c"]
    app = "tests.scale_app:create_app()"
    with running(names, app, env, tmp_path, workers=WORKERS, threads=THREADS) as started:
        yield started


@pytest.fixture
def provider(servers: list[Gunicorn]) -> Iterator[Provider]:
    provider = Provider([s.port for s in servers])
    yield provider
    provider.close()


class Run:
    """Every delivery's attempts, by event key (a storm's copies are several deliveries)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.deliveries: dict[str, list[list[Attempt]]] = {}
        self.lock = threading.Lock()

    def deliver(self, key: str, body: bytes, server: int) -> None:
        attempts = self.provider.deliver(body, server)
        with self.lock:
            self.deliveries.setdefault(key, []).append(attempts)

    def storms(self, events: list[tuple[str, bytes]], servers: int) -> None:
        """Each event sent ``COPIES`` times to every server at once, one after another."""
        copies = COPIES * servers
        with ThreadPoolExecutor(max_workers=copies) as pool:
            for key, body in events:
                go = threading.Barrier(copies)
                sent = [pool.submit(self._copy, go, key, body, n % servers) for n in range(copies)]
                for future in sent:
                    future.result()

    def _copy(self, go: threading.Barrier, key: str, body: bytes, server: int) -> None:
        go.wait(timeout=60)
        self.deliver(key, body, server)

    def attempts(self, keys: Iterable[str] | None = None) -> list[Attempt]:
        chosen = self.deliveries if keys is None else keys
        return [a for key in chosen for d in self.deliveries[key] for a in d]


def half_done(engine: sa.Engine, keys: list[str]) -> set[str]:
    """The events whose shipped handler committed (a notice) and whose second one did not."""
    with engine.connect() as conn:
        noticed = conn.scalars(sa.select(Notice.event_key).where(Notice.event_key.in_(keys)))
        recorded = conn.scalars(sa.select(Effect.event_key).where(Effect.event_key.in_(keys)))
        return set(noticed) - set(recorded)


def kill_mid_event(engine: sa.Engine, server: Gunicorn, keys: list[str]) -> set[str]:
    """Kill ``server`` once ``IN_FLIGHT`` of the events are half done on it (inside
    ``record``'s transaction); the events half done when it died."""
    deadline = time.monotonic() + 60
    while len(before := half_done(engine, keys)) < IN_FLIGHT:
        assert time.monotonic() < deadline, f"only {len(before)} slow events half done"
        time.sleep(0.02)
    assert server.kill(), "the server had no workers"
    # One that committed between the look and the kill was not in flight. No survivor has
    # claimed one: they were sent to this server alone, and go elsewhere once it fails.
    return before & half_done(engine, keys)


@dataclass
class Outcome:
    """What one run did and left in the database."""

    run: Run
    keys: set[str]
    storms: list[str]
    in_flight: set[str]
    killed_at: float
    seconds: float
    records: dict[str, Record]
    effects: list[tuple[str, str]]  # (event key, server that applied it), one per row
    notices: Counter[str]


def scenario(
    store: str, url: str, engine: sa.Engine, servers: list[Gunicorn], provider: Provider
) -> Outcome:
    """The load, the storms and the kill; then what the database holds."""
    loads = [event(email) for email in LOADS[: EVENTS[store]]]
    storm_events = [event(email) for email in STORMED]
    doomed = [event(email) for email in HALF_DONE]
    run = Run(provider)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        storming = threading.Thread(target=run.storms, args=(storm_events, len(servers)))
        storming.start()
        futures = [
            pool.submit(run.deliver, k, b, n % len(servers)) for n, (k, b) in enumerate(loads)
        ]
        while sum(f.done() for f in futures) < len(loads) // 3:
            time.sleep(0.05)
        with ThreadPoolExecutor(max_workers=DOOMED) as doomed_pool:
            futures += [doomed_pool.submit(run.deliver, k, b, VICTIM) for k, b in doomed]
            in_flight = kill_mid_event(engine, servers[VICTIM], [k for k, _ in doomed])
            killed_at = time.perf_counter()
            for future in futures:
                future.result()
        storming.join()
    seconds = time.monotonic() - started
    with engine.connect() as conn:
        effects = [(k, s) for k, s in conn.execute(sa.select(Effect.event_key, Effect.server))]
        notices = Counter(conn.scalars(sa.select(Notice.event_key)))
    return Outcome(
        run,
        {k for k, _ in loads + storm_events + doomed},
        [k for k, _ in storm_events],
        in_flight,
        killed_at,
        seconds,
        {r.key: r for r in stored(store, url, engine)},
        effects,
        notices,
    )


def stored(store: str, url: str, engine: sa.Engine) -> list[Record]:
    """Every event the servers' shared store holds."""
    reader: Store = SQLAlchemyStore(engine)
    if store == "postgres":
        reader = PostgresStore(url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        return list(reader.records(limit=None))
    finally:
        getattr(reader, "close", lambda: None)()


def check_every_event_accepted_and_recorded_once(outcome: Outcome, servers: list[Gunicorn]) -> None:
    """What holds on every store: 0 lost, recorded once, the kill real and survived."""
    run, keys = outcome.run, outcome.keys
    attempts = run.attempts()
    # 0 lost: every delivery, each storm copy included, was eventually answered 200.
    unanswered = [k for k, ds in run.deliveries.items() for d in ds if d[-1].status != 200]
    assert not unanswered, f"{len(unanswered)} deliveries never accepted"
    assert set(run.deliveries) == keys
    assert not [a.status for a in attempts if 400 <= a.status < 500]
    # Recorded once: one record per event (nothing else), finished, both handlers done.
    records = outcome.records
    assert set(records) == keys
    assert all(r.finished and r.completed == set(HANDLERS) for r in records.values())
    # The shipped handler, at most once per event and user: one notice per event.
    assert outcome.notices == Counter(dict.fromkeys(keys, 1))
    assert {k for k, _ in outcome.effects} == keys
    # The kill was real: the victim had applied events and answered 200s, nothing after
    # it; the events it held half done were claimed again and applied by the survivors.
    victim = servers[VICTIM].name
    assert victim in {server for _, server in outcome.effects}
    before = [a for a in attempts if a.server == VICTIM and a.started < outcome.killed_at]
    assert 200 in {a.status for a in before}
    after = [a for a in attempts if a.server == VICTIM and a.started > outcome.killed_at]
    assert {a.status for a in after} <= {0}
    assert outcome.in_flight
    for key in outcome.in_flight:
        assert records[key].attempts >= 2
        assert victim not in [server for k, server in outcome.effects if k == key]
    # The storms overlapped: copies found their event busy (503) on other servers.
    assert 503 in {a.status for a in run.attempts(outcome.storms)}


def report(store: str, outcome: Outcome, servers: list[Gunicorn]) -> None:
    attempts = outcome.run.attempts()
    first = [ds[0][0] for ds in outcome.run.deliveries.values() if len(ds) == 1]
    answers = dict(sorted(Counter(a.status for a in attempts).items()))
    applied_by = dict(sorted(Counter(server for _, server in outcome.effects).items()))
    claimed_again = sum(1 for r in outcome.records.values() if r.attempts > 1)
    twice = sum(1 for n in Counter(k for k, _ in outcome.effects).values() if n > 1)
    print(
        f"\n{store}: {len(outcome.keys)} events ({len(outcome.storms)} stormed "
        f"{COPIES * len(servers)} times, {len(outcome.in_flight)} half done at the kill) over "
        f"{len(servers)} servers in {outcome.seconds:.1f} s: {len(attempts)} requests, "
        f"{len(attempts) / outcome.seconds:.0f}/s; answers {answers}; first deliveries "
        f"p50 {percentile([a.seconds for a in first], 0.5) * 1000:.1f} ms, "
        f"p99 {percentile([a.seconds for a in first], 0.99) * 1000:.1f} ms; claimed again "
        f"{claimed_again}; applied twice {twice}; applied by {applied_by}"
    )


def test_three_servers_lose_nothing_and_apply_nothing_twice_when_one_is_killed(
    store: str, url: str, engine: sa.Engine, servers: list[Gunicorn], provider: Provider
) -> None:
    outcome = scenario(store, url, engine, servers, provider)
    report(store, outcome, servers)
    check_every_event_accepted_and_recorded_once(outcome, servers)
    applications = Counter(k for k, _ in outcome.effects)
    claimed_again = {k for k, r in outcome.records.items() if r.attempts > 1}
    # Only the events the killed server held were claimed again: at most one per thread.
    assert len(claimed_again) <= WORKERS * THREADS
    if store == "sqlalchemy":
        # Transactional: each application committed with its completion, exactly once.
        assert applications == Counter(dict.fromkeys(outcome.keys, 1))
    else:
        # At least once: a second application only of an event claimed again.
        assert {k for k, n in applications.items() if n > 1} <= claimed_again
