"""Over real HTTP: one, two and three servers sharing one PostgresStore, and one on an SQLiteStore.

Run from the repository root::

    python -m benchmarks.postgres_http            # a few minutes
    python -m benchmarks.postgres_http --quick    # a smoke run; the figures mean nothing

Four gunicorn servers run side by side (each its own master, ``--workers``
gthread workers of ``--threads`` threads, ``--preload``), all serving
``tests.scale_app:create_store_app()``: the Postmark route, Basic auth and one
handler that does nothing, so what differs is the store. Three share one
``PostgresStore`` (a throw-away server, ``tests/postgres.py``: on 127.0.0.1,
``fsync=off``; or ``--postgres URL``); the fourth has an ``SQLiteStore`` file.
Rows ``pg-1``, ``pg-2`` and ``pg-3`` load the first one, two or three
PostgreSQL servers, ``sqlite-1`` the SQLite one, with the same total of
``--connections`` shared out over the row's servers and ``--requests``
deliveries per run, every one a new event. The rows take turns over
``--repeats`` runs in a rotated order, after one warm-up run each; each figure
is the median of the runs. After every run the row's store is checked: one
event per answer (plus at most one per connection still in flight), every one
finished, no answer but 200, no socket error.

The load is wrk's (``tests/scale_load.py``: one wrk per server, their latency
histograms added up) or, without wrk (``apt-get install wrk``) or with
``--client python``, Python threads on kept-alive connections, which take
part of the two cores from the servers. All of it, wrk and PostgreSQL
included, shares this machine's CPUs: more servers add processes, not cores.

Then ``benchmarks.postgres_store`` runs (cited, not duplicated): a claim and
its completion per event, PostgresStore against SQLiteStore, without HTTP.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.scale_app import PASSWORD, USER
from tests.scale_load import Load, python_load, wrk_load
from tests.scale_servers import running

from .harness import bounce_body, workdir
from .http_load import body_template

Counts = Callable[[], tuple[int, int]]

ROWS = {
    "pg-1": "PostgresStore, 1 server",
    "pg-2": "PostgresStore, 2 servers (same database)",
    "pg-3": "PostgresStore, 3 servers (same database)",
    "sqlite-1": "SQLiteStore, 1 server",
}


def main(argv: list[str] | None = None) -> int:
    """Parse the options, start PostgreSQL if needed, run the rows, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres_http", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="per run (3000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row, interleaved (3)")
    parser.add_argument("--connections", type=int, default=12, help="in total, per row (12)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--postgres", metavar="URL", help="a database of your own server")
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.repeats = 150, 1
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    elif args.client == "wrk" and not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk, or --client python", file=sys.stderr)
        return 2
    server = None
    if args.postgres is None:
        from tests.postgres import start

        server = start()
        args.postgres = server.url(server.create_database("http"))
        args.store_postgres = server.url(server.create_database("store"))
        args.note = "throw-away server on 127.0.0.1 (fsync=off, synchronous_commit=off)"
    else:
        args.store_postgres = args.postgres
        args.note = "the server given"
    try:
        with workdir("bounce-pg-http-", keep=args.keep) as path:
            return run(args, path)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, path: Path) -> int:
    """Start the four servers, time the rows, check each run, report."""
    sqlite_file = path / "bounces.sqlite3"
    pg_env = {"BOUNCE_STORE_URL": args.postgres}
    sqlite_env = {"BOUNCE_STORE_URL": f"sqlite:///{sqlite_file}"}
    options: dict[str, Any] = {"workers": args.workers, "threads": args.threads, "preload": True}
    app = "tests.scale_app:create_store_app()"
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    template = body_template(path / "body.json")
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in ROWS}
    with (
        running(["pg-a", "pg-b", "pg-c"], app, pg_env, path, **options) as pg,
        running(["sqlite"], app, sqlite_env, path, **options) as lite,
    ):
        ports = {
            "pg-1": [pg[0].port],
            "pg-2": [s.port for s in pg[:2]],
            "pg-3": [s.port for s in pg],
            "sqlite-1": [lite[0].port],
        }
        counters = {name: _counter(name, args.postgres, sqlite_file) for name in ROWS}
        print(
            f"{args.workers} gthread workers x {args.threads} threads per server, "
            f"{args.connections} connections per row, {args.requests} requests per run, "
            f"{args.repeats} runs per row; client {args.client}; PostgreSQL: {args.note}"
        )
        names = list(ROWS)
        number = 0
        for repeat in range(-1, args.repeats):  # -1: the warm-up, not reported
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                count = min(200, args.requests) if repeat < 0 else args.requests
                before = counters[name]()
                load = _load(args, ports[name], count, auth, template, path, number)
                number += 1
                _check(name, load, count, before, counters[name], args.connections)
                if repeat >= 0:
                    samples[name].append(
                        {
                            "rps": load.rps,
                            "p50_ms": load.percentile_ms(0.5),
                            "p99_ms": load.percentile_ms(0.99),
                        }
                    )
    rows = _report(args, samples)
    store_json = path / "postgres_store.json"
    print(
        "\nclaim + completion per event, no HTTP: python -m benchmarks.postgres_store, "
        "on the same PostgreSQL server (another database unless --postgres)"
    )
    from . import postgres_store

    store_args = ["--postgres", args.store_postgres, "--json", str(store_json)]
    if postgres_store.main(store_args + (["--quick"] if args.quick else [])) != 0:
        return 1
    if args.json is not None:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        # The URLs may hold a password.
        del settings["postgres"], settings["store_postgres"]
        results = {
            "settings": settings,
            "rows": rows,
            "runs": samples,
            "postgres_store": json.loads(store_json.read_text()),
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _load(
    args: argparse.Namespace,
    ports: list[int],
    count: int,
    auth: str,
    template: Path,
    path: Path,
    number: int,
) -> Load:
    if args.client == "wrk":
        wrk = shutil.which("wrk")
        assert wrk is not None  # checked by main()
        # Each run's Postmark IDs from a range of its own: never a redelivery.
        base = 10**12 + number * 10**10
        return wrk_load(
            wrk,
            ports,
            count,
            args.connections,
            template=template,
            id_base=base,
            auth=auth,
            workdir=path,
        )
    bodies = [bounce_body(f"user{n}@example.com") for n in range(count)]
    return python_load(ports, bodies, args.connections)


def _counter(name: str, postgres: str, sqlite_file: Path) -> Counts:
    """A function returning (events, finished events) in the row's store."""
    query = "SELECT count(*), count(finished_at) FROM bounce_event"

    def in_postgres() -> tuple[int, int]:
        import psycopg

        with psycopg.connect(postgres) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def in_sqlite() -> tuple[int, int]:
        conn = sqlite3.connect(sqlite_file, timeout=30)
        try:
            events, finished = conn.execute(query).fetchone()
        finally:
            conn.close()
        return int(events), int(finished)

    return in_sqlite if name.startswith("sqlite") else in_postgres


def _check(
    name: str, load: Load, count: int, before: tuple[int, int], counter: Counts, slack: int
) -> None:
    """Every answer 200, no socket error, one finished event per answer."""
    if load.not_200 or load.errors or load.answered < count:
        raise SystemExit(
            f"{name}: {load.answered} of {count} answered, {load.not_200} not 200, "
            f"{load.errors} socket errors"
        )
    # Requests a stopping wrk left in flight are still served: wait for them.
    time.sleep(0.5)
    events, finished = counter()
    stored = events - before[0]
    if not load.answered <= stored <= load.answered + slack or finished != events:
        raise SystemExit(
            f"{name}: {load.answered} answered 200, {stored} events stored, "
            f"{events - finished} unfinished"
        )


def _report(args: argparse.Namespace, samples: dict[str, list[dict[str, float]]]) -> list[Any]:
    print(f"\nload average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    header = f"{'row':<44} {'req/s':>7} {'(min - max)':>15} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)
    print("-" * len(header))
    rows: list[dict[str, Any]] = []
    for name, label in ROWS.items():
        rps = [s["rps"] for s in samples[name]]
        p50 = statistics.median(s["p50_ms"] for s in samples[name])
        p99 = statistics.median(s["p99_ms"] for s in samples[name])
        spread = f"({min(rps):.0f} - {max(rps):.0f})"
        print(f"{label:<44} {statistics.median(rps):>7.0f} {spread:>15} {p50:>8.2f} {p99:>8.2f}")
        rows.append(
            {
                "row": name,
                "label": label,
                "rps": statistics.median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "p50_ms": p50,
                "p99_ms": p99,
            }
        )
    median = {row["row"]: row["rps"] for row in rows}
    print(
        f"req/s ratios: pg-2 / pg-1 {median['pg-2'] / median['pg-1']:.2f}x, "
        f"pg-3 / pg-1 {median['pg-3'] / median['pg-1']:.2f}x, "
        f"pg-1 / sqlite-1 {median['pg-1'] / median['sqlite-1']:.2f}x "
        "(medians of the runs; p50/p99 of each run's answers, median over the runs)"
    )
    return rows


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.exit("run it as a module: python -m benchmarks.postgres_http")
    sys.exit(main())
