"""1,000-event SendGrid and Mandrill batches against one event per request, same store.

Run from the repository root::

    pip install -e ".[bench]" && python -m benchmarks.batch

One ``BounceMiddleware`` with a SendGrid route (signed requests, the published
TEST key), a Mandrill route (signed ``mandrill_events`` forms) and a no-op
handler, in front of a ``SQLiteStore`` in a temporary file (its defaults: WAL,
``synchronous=NORMAL``). For each provider two rows post to it in turn: one
event per request (the single-event path: a claim and a completion, two
transactions per event) and 1,000 events per request (``claim_many`` and
``settle_many``: two transactions per batch). Both are reported per event; the
issues' target (12 for SendGrid, 13 for Mandrill) is the batch at most 0.25x
the single path of the same provider. The same pairs run without a store, for
what parsing and verifying cost alone, and, with ``--postgres URL`` or
``--postgres-start``, SendGrid's with ``SQLAlchemyStore`` and ``DjangoStore``
on PostgreSQL.
Every row is checked before it is timed (200, each event run once and stored
finished, a redelivery runs nothing, a forged signature stores nothing) and
after each batch. ``--quick`` runs a short version (figures only indicative).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import Row, workdir
from .report import paired

RESULTS = Path(__file__).resolve().parent / "results"
LIMIT = 0.25  #: issues 12, 13: per event, a batch at most 1/4 of one event per request


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, time the rows in a temporary directory, print the ratios."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats (15)")
    parser.add_argument("--seconds", type=float, default=0.3, help="time per row per repeat (0.3)")
    parser.add_argument(
        "--size", type=int, default=1000, help="events per batch (1000; Mandrill's at most 1000)"
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats of 0.1 s: a smoke run")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="also time SQLAlchemyStore and DjangoStore on this PostgreSQL database "
        "(postgresql+psycopg://user@host:port/db; their tables are created there)",
    )
    parser.add_argument(
        "--postgres-start",
        action="store_true",
        help="start a throw-away PostgreSQL server (tests/postgres.py: fsync=off) for it",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="events stored in the SQLite store before timing (0: a new file)",
    )
    parser.add_argument("--only", default="", help="comma-separated row keys to time")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, default=RESULTS / "batch.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds = 3, 0.1
    if not 2 <= args.size <= 3000:
        parser.error("--size must be between 2 and 3000 (SendGrid's batches stay under 1 MiB)")
    server = None
    if args.postgres_start:
        from tests.postgres import start

        server = start()
        args.postgres = server.url(server.create_database("bench"), "postgresql+psycopg")
        args.postgres_note = "throw-away server, fsync=off, synchronous_commit=off"
    else:
        args.postgres_note = "the server given"
    try:
        with workdir("bounce-batch-", keep=args.keep) as path:
            return run(args, path)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, directory: Path) -> int:
    """The measurements, with the SQLite file in ``directory``."""
    from .batch_rows import MANDRILL_MAX, BatchRows
    from .harness import calibrate, run_interleaved
    from .report import Ratio, environment, judge, print_rows, rows_json, save

    say = print
    env = environment()
    say(
        f"bounce-middleware batch benchmark: Python {env['python']}, SQLite {env['sqlite']}, "
        f"{env['cpus']} CPUs, load average {env['load_average']:.2f}; "
        f"{args.size:,} events per batch"
    )
    # The checks send a forged batch on purpose; its warning is expected, not news.
    logging.getLogger("bounce_middleware").addHandler(logging.NullHandler())
    logging.getLogger("bounce_middleware").propagate = False
    builder = BatchRows(args.size)
    rows = builder.rows(directory / "bounces.sqlite3", args.postgres)
    if args.prefill:
        builder.prefill(args.prefill)
        say(f"SQLite store prefilled with {builder.stored():,} events")
    if args.only:
        wanted = set(args.only.split(","))
        rows = [row for row in rows if row.key in wanted]
    for row in rows:
        row.check()
    say(f"checked {len(rows)} rows: each event run once and stored finished, forgeries refused")
    batches = {row.key: calibrate(row, args.seconds) for row in rows}
    # The store grows as the rows run; a batch's cost per event grows with it.
    sizes = [builder.stored()]

    def progress(text: str) -> None:
        sizes.append(builder.stored())
        say("  " + text)

    started = time.monotonic()
    run_interleaved(rows, args.repeats, batches, progress=progress)
    elapsed = time.monotonic() - started
    by_key = {row.key: row for row in rows}

    say("")
    say(
        f"per-event time, median of {args.repeats} interleaved repeats (min - max), "
        f"{elapsed:.0f} s, load average {os.getloadavg()[0]:.2f} after; "
        "n = requests per timed batch"
    )
    if args.postgres:
        say(f"PostgreSQL: {args.postgres_note}")
    print_rows(rows, batches, say, unit="event", width=66)
    say("")
    say("ratios (median of the per-repeat ratios, min - max):")
    size = f"{args.size:,}"
    md_size = f"{min(args.size, MANDRILL_MAX):,}"
    ratios = [
        Ratio(f"SendGrid, SQLiteStore: per event, {size}-event batch / one per request",
              "batch", "single", LIMIT),
        Ratio(f"Mandrill, SQLiteStore: per event, {md_size}-event batch / one per request",
              "md-batch", "md-single", LIMIT),
        Ratio("SendGrid, no store: per event, batch / one event per request",
              "batch-0", "single-0"),
        Ratio("Mandrill, no store: per event, batch / one event per request",
              "md-batch-0", "md-single-0"),
        Ratio("SendGrid, SQLiteStore / no store, one event per request", "single", "single-0"),
        Ratio("SendGrid, SQLiteStore / no store, batch", "batch", "batch-0"),
        Ratio("Mandrill, SQLiteStore / no store, one event per request",
              "md-single", "md-single-0"),
        Ratio("Mandrill, SQLiteStore / no store, batch", "md-batch", "md-batch-0"),
        Ratio("Mandrill / SendGrid, SQLiteStore, batch", "md-batch", "batch"),
        Ratio("PostgreSQL, SQLAlchemyStore: batch / one event per request",
              "batch-pg", "single-pg"),
        Ratio("PostgreSQL, DjangoStore: batch / one event per request", "batch-dj", "single-dj"),
        Ratio("PostgreSQL, SQLAlchemyStore / SQLiteStore, one event per request",
              "single-pg", "single"),
        Ratio("PostgreSQL, SQLAlchemyStore / SQLiteStore, batch", "batch-pg", "batch"),
        Ratio("PostgreSQL, DjangoStore / SQLiteStore, one event per request",
              "single-dj", "single"),
        Ratio("PostgreSQL, DjangoStore / SQLiteStore, batch", "batch-dj", "batch"),
    ]  # fmt: skip
    results = judge(ratios, by_key, say)
    growth: dict[str, list[dict[str, Any]]] = {}
    for name, prefix in (("SendGrid", ""), ("Mandrill", "md-")):
        if {f"{prefix}batch", f"{prefix}single"} <= set(by_key):
            growth[name] = store_growth(by_key[f"{prefix}batch"], by_key[f"{prefix}single"], sizes)
            say("")
            say(
                f"{name}'s SQLiteStore target by the store's size "
                "(events stored while those repeats ran):"
            )
            for line in growth[name]:
                say(
                    f"  repeats {line['repeats']:<8} {line['from']:>8,} - {line['to']:<8,} "
                    f"events  {line['ratio']:.3f}"
                )
    verdicts = [r["verdict"] for r in results if r["verdict"]]
    say(
        f"targets: {verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS "
        f"(per event, batch <= {LIMIT:.2f} x one event per request, SQLiteStore)"
    )
    result: dict[str, Any] = {
        **env,
        "repeats": args.repeats,
        "seconds_per_batch": args.seconds,
        "batch_size": args.size,
        "postgres": args.postgres_note if args.postgres else None,
        "prefill": args.prefill,
        "stored_after_each_repeat": sizes,
        "target_by_store_size": growth.get("SendGrid", []),
        "mandrill_target_by_store_size": growth.get("Mandrill", []),
        "rows": rows_json(rows, batches),
        "ratios": results,
    }
    save(args.json, result, say)
    return 0


def store_growth(batch: Row, single: Row, sizes: list[int]) -> list[dict[str, Any]]:
    """The batch/single ratio in each third of the repeats, with the store's size then."""
    ratios = paired(batch, single)
    count = len(ratios)
    thirds = [(k * count // 3, (k + 1) * count // 3) for k in range(3)]
    return [
        {
            "repeats": f"{start + 1}-{end}",
            "from": sizes[start],
            "to": sizes[end],
            "ratio": statistics.median(ratios[start:end]),
        }
        for start, end in thirds
        if end > start
    ]


if __name__ == "__main__":
    sys.exit(main())
