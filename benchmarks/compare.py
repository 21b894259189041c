"""The comparison table: per-request time of every alternative, measured side by side.

Run from the repository root::

    pip install -e ".[bench]" && python -m benchmarks.compare

Every row is checked (answers, rows written) before it is timed and after
each timed batch; a row that fails stops the run with a message naming it.
The table is printed and written as JSON to ``benchmarks/results/compare.json``.
``--quick`` runs a short version (figures only indicative).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import workdir

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Target:
    """A ratio the issue sets: ``numerator / denominator <= limit``.

    ``abba``: judged on back-to-back A-B-B-A batches (see
    :func:`benchmarks.harness.abba`) rather than on the repeats, because the
    difference sought is smaller than the noise between repeats.
    """

    name: str
    numerator: str
    denominator: str
    limit: float
    abba: bool = False


TARGETS = (
    Target("pass-through vs hand-written check (function)", "2", "1b", 1.10, abba=True),
    Target("pass-through vs hand-written check (class)", "2", "1c", 1.10, abba=True),
    Target("pass-through, 4 routes vs hand-written check (function)", "2b", "1d", 1.10, abba=True),
    Target("pass-through, 4 routes vs hand-written check (class)", "2b", "1e", 1.10, abba=True),
    Target("pass-through vs unwrapped Django view", "3b", "3a", 1.01, abba=True),
    Target("pass-through vs unwrapped Django view, MIDDLEWARE = []", "3d", "3c", 1.01, abba=True),
    Target("bounce path, no store vs Django trivial view", "4a", "3a", 0.15),
    Target("bounce path, SQLiteStore vs Django trivial view", "4c", "3a", 1.00),
    Target("middleware + Django adapter vs django-anymail", "7", "6", 0.50),
    Target("middleware + Django adapter vs classic view", "7", "5", 0.85),
)

#: The row each row's "ratio" column compares with.
REFERENCE = {
    "1b": "1a",
    "1c": "1a",
    "1d": "1a",
    "1e": "1a",
    "2": "1b",
    "2b": "1d",
    "3b": "3a",
    "3c": "3a",
    "3d": "3c",
    "3e": "3b",
    "4a": "3a",
    "4b": "3a",
    "4c": "3a",
    "6": "5",
    "7": "6",
}


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-repeat ratios: both rows ran within the same repeat, under the same load."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def main(argv: Sequence[str] | None = None) -> int:
    """Set up Django and the database, check and time every row, print and save the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats (21)")
    parser.add_argument(
        "--seconds", type=float, default=0.15, help="time per row per repeat (0.15)"
    )
    parser.add_argument(
        "--abba-rounds", type=int, default=40, help="A-B-B-A rounds per pass-through target (40)"
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats of 0.05 s: a smoke run")
    parser.add_argument(
        "--no-email-index",
        action="store_true",
        help="leave auth_user.email without its indexes (each lookup scans 10,000 users)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="Django's CONN_MAX_AGE for the database rows (default: None, persistent)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated row keys to time (default: all rows)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, default=RESULTS / "compare.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds, args.abba_rounds = 3, 0.05, 5

    with workdir("bounce-bench-", keep=args.keep) as path:
        return run(args, path)


def run(args: argparse.Namespace, workdir: Path) -> int:
    """The measurements, in ``workdir`` (a fresh temporary directory)."""
    os.environ["BOUNCE_BENCH_DB"] = str(workdir / "django.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.django_project.settings")
    if args.conn_max_age is not None:
        os.environ["BOUNCE_BENCH_CONN_MAX_AGE"] = str(args.conn_max_age)
    import django

    django.setup()
    from .allocations import measure
    from .apps import bare_app, four_routes
    from .django_project.data import USERS, create_database
    from .harness import abba, bounce_body, calibrate, get_environ, post_environ, run_interleaved
    from .rows import BOUNCE_PATH, ORDINARY_PATH, build_rows

    say = print
    say(
        f"bounce-middleware benchmark: Python {platform.python_version()}, "
        f"Django {django.get_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs"
    )
    load_before = os.getloadavg()
    create_database(Path(os.environ["BOUNCE_BENCH_DB"]), email_index=not args.no_email_index)
    say(f"database: {os.environ['BOUNCE_BENCH_DB']} ({USERS:,} users, WAL, synchronous=NORMAL)")

    # The checks send wrong passwords on purpose; their warnings are expected, not news.
    logging.getLogger("bounce_middleware").addHandler(logging.NullHandler())
    logging.getLogger("bounce_middleware").propagate = False
    logging.getLogger("django.security").setLevel(logging.CRITICAL)
    rows = build_rows(workdir)
    if args.only:
        wanted = set(args.only.split(","))
        rows = [row for row in rows if row.key in wanted]
    for row in rows:
        row.check()
    say(f"checked {len(rows)} rows: answers and rows written as expected")
    batches = {row.key: calibrate(row, args.seconds) for row in rows}
    started = time.monotonic()
    run_interleaved(rows, args.repeats, batches, progress=lambda text: print("  " + text))
    by_key = {row.key: row for row in rows}
    abba_ratios: dict[tuple[str, str], list[float]] = {}
    for target in TARGETS:
        pair = (target.denominator, target.numerator)
        if target.abba and set(pair) <= set(by_key):
            first, second = by_key[pair[0]], by_key[pair[1]]
            sizes = {
                r.key: max(10, int(batches[r.key] * 0.03 / args.seconds)) for r in (first, second)
            }
            abba_ratios[pair] = abba(first, second, args.abba_rounds, sizes)
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    # Allocations on the pass-through path, with the bounce path as a control.
    from bounce_middleware import BounceMiddleware

    credentials = ["postmark:s3cret"]
    wrapped = BounceMiddleware(bare_app, path=BOUNCE_PATH, credentials=credentials)
    allocations = [
        measure("bare app", bare_app, lambda: get_environ(ORDINARY_PATH)),
        measure("BounceMiddleware pass-through", wrapped, lambda: get_environ(ORDINARY_PATH)),
        measure(
            "pass-through, 4 provider routes",
            BounceMiddleware(bare_app, routes=four_routes()),
            lambda: get_environ(ORDINARY_PATH),
        ),
        measure(
            "bounce path, no store (control)",
            wrapped,
            lambda: post_environ(BOUNCE_PATH, bounce_body("a@example.com"), "postmark", "s3cret"),
        ),
    ]

    say("")
    say(
        f"per-request time, median of {args.repeats} interleaved repeats (min - max), "
        f"{elapsed:.0f} s, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    header = f"{'row':<4} {'what':<48} {'median us':>10} {'min':>9} {'max':>9} {'n':>7}  ratio"
    say(header)
    say("-" * len(header))
    for row in rows:
        reference = REFERENCE.get(row.key)
        versus = ""
        if reference in by_key:
            values = paired_ratios(row.samples, by_key[reference].samples)
            versus = f"{statistics.median(values):.3f} x {reference}"
        say(
            f"{row.key:<4} {row.label:<48} {row.median * 1e6:>10.2f} "
            f"{min(row.samples) * 1e6:>9.2f} {max(row.samples) * 1e6:>9.2f} "
            f"{batches[row.key]:>7}  {versus}"
        )
    say("")
    say(
        "targets (ratio = median of the per-repeat ratios, min - max; "
        f"* = median of {args.abba_rounds} back-to-back A-B-B-A rounds of ~0.03 s batches):"
    )
    target_results = []
    for target in TARGETS:
        if target.numerator not in by_key or target.denominator not in by_key:
            continue
        values = abba_ratios.get((target.denominator, target.numerator)) or paired_ratios(
            by_key[target.numerator].samples, by_key[target.denominator].samples
        )
        ratio = statistics.median(values)
        star = "*" if (target.denominator, target.numerator) in abba_ratios else " "
        met = ratio <= target.limit
        target_results.append(
            {
                "target": target.name,
                "rows": f"{target.numerator}/{target.denominator}",
                "limit": target.limit,
                "ratio": ratio,
                "ratio_min": min(values),
                "ratio_max": max(values),
                "met": met,
                "method": "abba" if star == "*" else "repeats",
            }
        )
        say(
            f" {star}{target.numerator:>2}/{target.denominator:<3} {target.name:<56} "
            f"{ratio:6.3f} ({min(values):.3f} - {max(values):.3f})  "
            f"<= {target.limit:.2f}  {'met' if met else 'MISSED'}"
        )
    say("")
    say("allocations on one request (tracemalloc):")
    for allocation in allocations:
        say(
            f"  {allocation.label:<34} peak {allocation.peak_bytes:>6} bytes during the call, "
            f"{allocation.middleware_blocks_kept:>5} blocks kept by middleware.py"
        )
    extra = allocations[1].peak_bytes - allocations[0].peak_bytes
    routes_extra = allocations[2].peak_bytes - allocations[0].peak_bytes
    say(
        f"  pass-through allocates {extra} bytes per request beyond the bare app "
        f"({routes_extra} with 4 provider routes)"
    )

    spreads = [(max(r.samples) - min(r.samples)) / r.median for r in rows]
    say(f"noise: largest (max - min) / median of a row: {max(spreads):.1%}")
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "seconds_per_batch": args.seconds,
        "users": USERS,
        "email_index": not args.no_email_index,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": [
            {
                "row": row.key,
                "what": row.label,
                "batch": batches[row.key],
                "median_us": row.median * 1e6,
                "min_us": min(row.samples) * 1e6,
                "max_us": max(row.samples) * 1e6,
                "samples_us": [s * 1e6 for s in row.samples],
            }
            for row in rows
        ],
        "targets": target_results,
        "allocations": [a.as_dict() for a in allocations],
        "pass_through_extra_bytes": extra,
        "pass_through_routes_extra_bytes": routes_extra,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    say(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
