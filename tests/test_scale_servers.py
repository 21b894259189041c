"""Several application servers on one PostgreSQL database, one of them killed mid-run.

Three independent gunicorn servers (each its own master, two worker processes
of four threads, on its own port: three hosts) run ``tests/scale_app.py``: the
middleware with an ``SQLAlchemyStore`` in one PostgreSQL database and two
transactional handlers writing to that database, the shipped
``UserBounceHandler`` (a notice per user) and the README's own kind (a row per
application, no unique key). ``PostgresStore`` has no ``complete(...,
session=...)`` a handler's transaction could join: on it a handler is applied
at least once, so exactly once is proven on the SQLAlchemy store.

A provider (``tests/scale_servers.py``) delivers 10,000 distinct Postmark
events spread over the three, 24 at a time on kept-alive connections, while
duplicate storms send one slow event to all three servers at once, 30 copies
each; every delivery is retried on the next server, with backoff, until it is
answered 200. A third of the way in, one server is sent slow events, and once
their first handler committed and the second is inside its transaction, the
server's master and workers are killed with SIGKILL. Then: every event
recorded once and finished, its handlers' effects committed exactly once
each, every delivery eventually answered 200, the killed server's half-done
events taken over by the survivors.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from bounce_middleware.adapters.sqlalchemy import BounceEvent, CompletedHandler, Notice
from bounce_middleware.testing import postmark_bounce
from tests.postgres import PostgresServer
from tests.promise_app import percentile
from tests.scale_app import HANDLERS, SHIPPED, Effect, create_database
from tests.scale_servers import Attempt, Gunicorn, Provider, running

EVENTS = 10_000
CLIENTS = 12
STORMS = 12
COPIES = 10  # per server, all at once
DOOMED = 6  # slow events sent to the server about to be killed
IN_FLIGHT = 3  # of which at least this many are half done when it is killed
SLOW = 1.5  # seconds the ``slow`` events' second handler holds its transaction
LEASE = 4.0  # seconds a killed server's claims block the others
VICTIM = 1
LOADS = [f"user{n}@scale.example" for n in range(EVENTS)]
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
def servers(url: str, tmp_path: Path) -> Iterator[list[Gunicorn]]:
    env = {
        "BOUNCE_SCALE_DB": url,
        "BOUNCE_LEASE_SECONDS": str(LEASE),
        "BOUNCE_SLOW_SECONDS": str(SLOW),
    }
    names = ["host-a", "host-b", "host-c"]
    with running(names, "tests.scale_app:create_app()", env, tmp_path) as started:
        yield started


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
    """The events whose shipped handler committed and whose second one did not."""
    with engine.connect() as conn:
        shipped = conn.scalars(
            sa.select(CompletedHandler.event_key).where(
                CompletedHandler.event_key.in_(keys), CompletedHandler.handler == SHIPPED
            )
        )
        recorded = conn.scalars(sa.select(Effect.event_key).where(Effect.event_key.in_(keys)))
        return set(shipped) - set(recorded)


def kill_mid_event(engine: sa.Engine, server: Gunicorn, keys: list[str]) -> set[str]:
    """Kill ``server`` once ``IN_FLIGHT`` of the events are half done on it (inside
    ``record``'s transaction); the events half done when it died."""
    deadline = time.monotonic() + 60
    while len(before := half_done(engine, keys)) < IN_FLIGHT:
        assert time.monotonic() < deadline, f"only {len(before)} slow events half done"
        time.sleep(0.02)
    assert server.kill(), "the server had no workers"
    # One that committed between the look and the kill is not in flight. No survivor can
    # have taken one over yet: their leases (LEASE) outlast their handler (SLOW).
    return before & half_done(engine, keys)


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def provider(servers: list[Gunicorn]) -> Iterator[Provider]:
    provider = Provider([s.port for s in servers])
    yield provider
    provider.close()


def test_three_servers_lose_nothing_and_apply_nothing_twice_when_one_is_killed(
    engine: sa.Engine, servers: list[Gunicorn], provider: Provider
) -> None:
    loads = [event(email) for email in LOADS]
    storm_events = [event(email) for email in STORMED]
    doomed = [event(email) for email in HALF_DONE]
    keys = {k for k, _ in loads + storm_events + doomed}
    run = Run(provider)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS + DOOMED) as pool:
        storming = threading.Thread(target=run.storms, args=(storm_events, len(servers)))
        storming.start()
        futures = [
            pool.submit(run.deliver, k, b, n % len(servers)) for n, (k, b) in enumerate(loads)
        ]
        while sum(f.done() for f in futures) < EVENTS // 3:
            time.sleep(0.05)
        doomed_pool = ThreadPoolExecutor(max_workers=DOOMED)
        futures += [doomed_pool.submit(run.deliver, k, b, VICTIM) for k, b in doomed]
        in_flight = kill_mid_event(engine, servers[VICTIM], [k for k, _ in doomed])
        killed_at = time.perf_counter()
        killed_at = time.perf_counter()
        for future in futures:
            future.result()
        doomed_pool.shutdown()
        storming.join()
    seconds = time.monotonic() - started

    attempts = run.attempts()
    # 0 lost: every delivery, each storm copy included, was eventually answered 200.
    unanswered = [k for k, ds in run.deliveries.items() for d in ds if d[-1].status != 200]
    assert not unanswered, f"{len(unanswered)} deliveries never accepted"
    assert set(run.deliveries) == keys
    assert not [a.status for a in attempts if 400 <= a.status < 500]

    with engine.connect() as conn:
        events = {
            key: (finished, attempts_)
            for key, finished, attempts_ in conn.execute(
                sa.select(BounceEvent.key, BounceEvent.finished, BounceEvent.attempts)
            )
        }
        completions = Counter(
            conn.execute(sa.select(CompletedHandler.event_key, CompletedHandler.handler))
        )
        effects = list(conn.execute(sa.select(Effect.event_key, Effect.server)))
        notices = Counter(conn.scalars(sa.select(Notice.event_key)))
    # Recorded once: one row per event (nothing else), each finished with both handlers.
    assert set(events) == keys
    assert all(finished for finished, _ in events.values())
    assert completions == Counter({(k, h): 1 for k in keys for h in HANDLERS})
    # Applied exactly once: one effect row and one notice per event, over all servers.
    assert Counter(key for key, _ in effects) == Counter(dict.fromkeys(keys, 1))
    assert notices == Counter(dict.fromkeys(keys, 1))

    # The kill was real: the victim had applied events and answered 200s, nothing after
    # it; the events it held half done were taken over (claimed again) by the survivors.
    applied_by = dict(effects)
    victim = servers[VICTIM].name
    assert victim in applied_by.values()
    assert any(a.status == 200 and a.started < killed_at for a in attempts if a.server == VICTIM)
    assert {a.status for a in attempts if a.server == VICTIM and a.started > killed_at} <= {0}
    assert in_flight and all(events[k][1] >= 2 and applied_by[k] != victim for k in in_flight)
    # The storms overlapped: copies found their event busy (503) on the other servers.
    assert 503 in {a.status for a in run.attempts(k for k, _ in storm_events)}

    first = [run.deliveries[k][0][0] for k, _ in loads]
    answers = dict(sorted(Counter(a.status for a in attempts).items()))
    print(
        f"\n{len(keys)} events ({EVENTS} distinct, {STORMS} storms of {COPIES * len(servers)} "
        f"copies, {len(in_flight)} half done at the kill) over {len(servers)} servers "
        f"in {seconds:.1f} s: "
        f"{len(attempts)} requests, {len(attempts) / seconds:.0f}/s; answers {answers}; "
        f"first deliveries p50 {percentile([a.seconds for a in first], 0.5) * 1000:.1f} ms, "
        f"p99 {percentile([a.seconds for a in first], 0.99) * 1000:.1f} ms; "
        f"taken over {sum(1 for _, n in events.values() if n > 1)}; "
        f"applied by server {dict(sorted(Counter(applied_by.values()).items()))}"
    )
