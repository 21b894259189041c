"""Load and duplicate storms against gunicorn workers sharing one SQLiteStore file.

Not a test: it measures. It starts the same server as ``tests/test_promises.py``
(:func:`tests.promise_app.serve`), then runs two scenarios:

- **load**: ``--events`` distinct bounces, each delivered once, ``--concurrency``
  at a time; anything not answered 200 is redelivered (as Postmark would) until it is.
- **duplicates**: ``--storms`` events, each delivered ``--copies`` times at once
  while its first delivery's handler is slow (``--slow`` seconds), then
  redelivered until answered 200.

and prints, per scenario: events sent, recorded in the store, duplicate
handler applications, events lost (a handler never applied), answers by
status, p50/p99 latency of the first deliveries and requests per second.

Run from the repository root::

    python -m benchmarks.store_load                 # about a minute
    python -m benchmarks.store_load --events 2000 --storms 5 --synchronous FULL
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file: make the repository root importable for ``tests.promise_app``.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bounce_middleware.sqlite_store import SQLiteStore  # noqa: E402
from bounce_middleware.testing import postmark_bounce  # noqa: E402
from tests.promise_app import (  # noqa: E402
    Answer,
    Server,
    percentile,
    post_all,
    post_until_accepted,
    serve,
    statuses,
)

HANDLER_NAMES = ("apply", "notify", "flaky")


def _events(count: int, address: str) -> list[bytes]:
    return [json.dumps(postmark_bounce(email=address.format(n=n))).encode() for n in range(count)]


def _key(body: bytes) -> str:
    return f"postmark:{json.loads(body)['ID']}"


def _report(
    name: str,
    server: Server,
    events: list[bytes],
    first: list[Answer],
    retries: list[Answer],
    seconds: float,
) -> None:
    keys = {_key(body) for body in events}
    store = SQLiteStore(server.store_path, read_only=True)
    try:
        recorded = {r.key for r in store.records(limit=None)} & keys
    finally:
        store.close()
    applied = server.applications()
    counts = [applied[key, handler] for key in keys for handler in HANDLER_NAMES]
    duplicates = sum(max(0, count - 1) for count in counts)
    lost = sum(1 for key in keys if any(applied[key, h] == 0 for h in HANDLER_NAMES))
    latencies = [answer.seconds for answer in first]
    print(f"{name}:")
    print(f"  events sent          {len(keys)}")
    print(f"  requests             {len(first)} first deliveries + {len(retries)} redeliveries")
    print(f"  recorded             {len(recorded)}")
    print(f"  duplicates applied   {duplicates}")
    print(f"  lost                 {lost}")
    print(f"  answers (first)      {statuses(first)}")
    print(f"  answers (redelivery) {statuses(retries)}")
    print(
        f"  latency              p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )
    print(f"  throughput           {len(first) / seconds:.0f} requests/s over {seconds:.1f} s")


def _redeliver(server: Server, events: list[bytes], answers: list[Answer]) -> list[Answer]:
    retries: list[Answer] = []
    for body, answer in zip(events, answers, strict=True):
        if answer.status != 200:
            retries.extend(post_until_accepted(server.url, body))
    return retries


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Start the server and run both scenarios against it."""
    options = f"timeout={args.timeout}&synchronous={args.synchronous}"
    with serve(
        workdir,
        workers=args.workers,
        threads=args.threads,
        store_options=options,
        slow_seconds=args.slow,
    ) as server:
        print(
            f"gunicorn: {args.workers} workers x {args.threads} threads (gthread), "
            f"store {server.store_path.name}?{options}, client concurrency {args.concurrency}\n"
        )
        events = _events(args.events, "user{n}@example.com")
        start = time.perf_counter()
        first = post_all(server.url, events, concurrency=args.concurrency)
        seconds = time.perf_counter() - start
        _report("load", server, events, first, _redeliver(server, events, first), seconds)

        storms = _events(args.storms, "slow-{n}@example.com")
        copies: list[Answer] = []
        redeliveries: list[Answer] = []
        start = time.perf_counter()
        for body in storms:
            answers = post_all(server.url, [body] * args.copies, concurrency=args.copies)
            copies.extend(answers)
            # Every 503'd copy would be retried; one retry until 200 shows it completes.
            if any(answer.status != 200 for answer in answers):
                redeliveries.extend(post_until_accepted(server.url, body))
        seconds = time.perf_counter() - start
        print()
        name = f"duplicates ({args.copies} copies each)"
        _report(name, server, storms, copies, redeliveries, seconds)
    codes = Counter(a.status for a in copies)
    if codes.keys() - {200, 503}:
        print(f"\nunexpected answers to duplicates: {dict(codes)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="distinct events (20000)")
    parser.add_argument("--storms", type=int, default=40, help="duplicated events (40)")
    parser.add_argument("--copies", type=int, default=50, help="copies per storm (50)")
    parser.add_argument("--slow", type=float, default=0.2, help="slow handler seconds (0.2)")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (32)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (3)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument("--timeout", type=float, default=5.0, help="store lock timeout (5)")
    parser.add_argument(
        "--synchronous", choices=["NORMAL", "FULL"], default="NORMAL", help="(NORMAL)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: temporary)")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        run(args, args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="bounce-bench-") as workdir:
        run(args, Path(workdir))


if __name__ == "__main__":
    main()
