"""What a claim and its completion cost per event: PostgresStore against SQLiteStore.

Run from the repository root::

    pip install -e ".[bench]" && python -m benchmarks.postgres_store

The store alone, no HTTP and no parsing: four rows, each the work the
middleware asks of its store for one event with one handler.

- ``sqlite-1``, ``pg-1``: one event at a time, ``claim()`` then
  ``complete(..., finished=True)`` (two transactions, two statements on PostgreSQL);
- ``sqlite-batch``, ``pg-batch``: a 1,000-event batch, ``claim_many()`` then
  ``settle_many()`` (one statement each on PostgreSQL), reported per event.

``SQLiteStore`` is a file in a temporary directory with its defaults (WAL,
``synchronous=NORMAL``: no fsync per commit). ``PostgresStore`` runs on a
throw-away server started for the run (``tests/postgres.py``: ``fsync=off``,
``synchronous_commit=off``, also no flush per commit; on 127.0.0.1 over TCP), or
on the server of ``--postgres URL``. Every event is new (a webhook's common
case), and the stores grow as the repeats go on. The rows take turns within
each repeat, in a rotated order; each figure is the median of the repeats (min
and max beside it), each ratio the median of the per-repeat ratios. Before
timing, every row is checked: each event stored once, finished, its handler
recorded, and a redelivery ``DONE``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import ClaimState, Settlement, Store

HANDLER = "benchmarks.handler"
LEASE = 300.0
_ids = itertools.count(1)
# A SendGrid-sized event (a batch keeps each event's own bytes, ~400 bytes).
_BODY = json.dumps(
    {"email": "user@example.com", "event": "bounce", "reason": "550 5.1.1 unknown user" * 8}
).encode()


def events(count: int) -> list[Bounce]:
    """``count`` new hard bounces, each with a key never used before."""
    return [
        Bounce(
            provider="bench",
            id=str(n),
            email=f"user{n}@example.com",
            kind=BounceKind.HARD,
            type="bounce",
            body=_BODY,
        )
        for n in itertools.islice(_ids, count)
    ]


def one_at_a_time(store: Store, bounces: Sequence[Bounce]) -> None:
    """What the middleware does for each event of one-event requests."""
    for bounce in bounces:
        claim = store.claim(bounce, lease_seconds=LEASE)
        store.complete(claim, HANDLER, finished=True)


def in_one_batch(store: Store, bounces: Sequence[Bounce]) -> None:
    """What the middleware does for a batch: one claim, one settlement."""
    claims = store.claim_many(bounces, lease_seconds=LEASE)
    store.settle_many([Settlement(claim, (HANDLER,), True) for claim in claims])


def check(name: str, store: Store, work: Callable[[Store, Sequence[Bounce]], None]) -> None:
    """Run ``work`` on a few events and check the store kept each as it must."""
    bounces = events(5)
    work(store, bounces)
    keys = {b.key for b in bounces}
    stored = [r for r in store.records(limit=None) if r.key in keys]
    ok = len(stored) == 5 and all(r.finished and r.completed == {HANDLER} for r in stored)
    again = store.claim_many(bounces, lease_seconds=LEASE)
    if not ok or {c.state for c in again} != {ClaimState.DONE}:
        raise SystemExit(f"row {name} failed its check: events not stored once and finished")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the rows, print the figures and ratios."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.postgres_store", description=__doc__
    )
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats (9)")
    parser.add_argument("--singles", type=int, default=500, help="events per single row (500)")
    parser.add_argument("--size", type=int, default=1000, help="events per batch (1000)")
    parser.add_argument("--batches", type=int, default=3, help="batches per batch row (3)")
    parser.add_argument("--postgres", metavar="URL", help="a database of your own server")
    parser.add_argument("--quick", action="store_true", help="2 short repeats: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.singles, args.batches = 2, 50, 1
    server = None
    note = "the server given"
    if args.postgres is None:
        from tests.postgres import start

        server = start()
        args.postgres = server.url(server.create_database("bench"))
        note = "throw-away server on 127.0.0.1 (fsync=off, synchronous_commit=off)"
    try:
        with tempfile.TemporaryDirectory(prefix="bounce-pg-bench-") as directory:
            return run(args, Path(directory) / "bounces.sqlite3", note)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, sqlite_path: Path, note: str) -> int:
    """Time the four rows, interleaved, and report."""
    sqlite = SQLiteStore(sqlite_path)
    postgres = PostgresStore(args.postgres)
    rows: dict[str, tuple[Store, Callable[[Store, Sequence[Bounce]], None], int, int]] = {
        "sqlite-1": (sqlite, one_at_a_time, args.singles, 1),
        "pg-1": (postgres, one_at_a_time, args.singles, 1),
        "sqlite-batch": (sqlite, in_one_batch, args.size, args.batches),
        "pg-batch": (postgres, in_one_batch, args.size, args.batches),
    }
    for name, (store, work, _, _) in rows.items():
        check(name, store, work)
    samples: dict[str, list[float]] = {name: [] for name in rows}
    names = list(rows)
    started = time.monotonic()
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            store, work, size, times = rows[name]
            prepared = [events(size) for _ in range(times)]
            begin = time.perf_counter()
            for bounces in prepared:
                work(store, bounces)
            samples[name].append((time.perf_counter() - begin) / (size * times) * 1e6)
    elapsed = time.monotonic() - started
    stored = {
        "sqlite": len(sqlite.records(limit=None)),
        "postgres": len(postgres.records(limit=None)),
    }
    sqlite.close()
    postgres.close()

    print(
        f"claim + completion per event, one handler: median of {args.repeats} interleaved "
        f"repeats (min - max), {elapsed:.0f} s; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} after"
    )
    print(f"PostgreSQL: {note}; SQLite: {sqlite_path.name} in a temporary directory")
    labels = {
        "sqlite-1": "SQLiteStore, one event at a time (claim + complete)",
        "pg-1": "PostgresStore, one event at a time (claim + complete)",
        "sqlite-batch": f"SQLiteStore, {args.size:,}-event batch (claim_many + settle_many)",
        "pg-batch": f"PostgresStore, {args.size:,}-event batch (claim_many + settle_many)",
    }
    for name, label in labels.items():
        values = samples[name]
        print(
            f"  {label:<70} {statistics.median(values):8.1f} us "
            f"({min(values):.1f} - {max(values):.1f})"
        )
    ratios = {
        "PostgresStore / SQLiteStore, one event at a time": ("pg-1", "sqlite-1"),
        "PostgresStore / SQLiteStore, batch": ("pg-batch", "sqlite-batch"),
        "PostgresStore: batch / one event at a time": ("pg-batch", "pg-1"),
        "SQLiteStore: batch / one event at a time": ("sqlite-batch", "sqlite-1"),
    }
    print("ratios (median of the per-repeat ratios, min - max):")
    judged: dict[str, float] = {}
    for label, (top, bottom) in ratios.items():
        per_repeat = [a / b for a, b in zip(samples[top], samples[bottom], strict=True)]
        judged[label] = statistics.median(per_repeat)
        print(
            f"  {label:<70} {judged[label]:8.2f}x ({min(per_repeat):.2f} - {max(per_repeat):.2f})"
        )
    print(
        f"events stored at the end: SQLite {stored['sqlite']:,}, PostgreSQL {stored['postgres']:,}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "postgres": note,
                    "repeats": args.repeats,
                    "microseconds_per_event": {
                        name: {
                            "median": statistics.median(values),
                            "min": min(values),
                            "max": max(values),
                        }
                        for name, values in samples.items()
                    },
                    "ratios": judged,
                    "stored": stored,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
