"""Over real HTTP: gunicorn on 127.0.0.1 (2 workers) driven by wrk for a fixed number of requests.

Run from the repository root (needs Debian's ``wrk``: ``apt-get install wrk``)::

    python -m benchmarks.http_load

One gunicorn server, with the settings below, serves the benchmark Django
project (:mod:`benchmarks.django_project.wsgi`): the middleware with the
Django adapter on ``/postmark/bounce`` (row 7), django-anymail's tracking
webhook (row 6) and the classic view (row 5), all doing the same database
work on one SQLite file with 10,000 users. wrk posts a fixed number of
deliveries to each, every one a new event (its own Postmark ``ID``) for an
existing user, through ``postmark.lua``; the paths take turns over several
repeats. After every run the database is checked: one notice per answered
delivery (a stopping wrk thread may leave up to one request per connection
in flight, which the server still completes) and no answer but 200.

Why wrk: it is in Debian, written in C (one thread drives the load using
little of the two cores the server needs), and its Lua hooks give every
request a distinct body and stop each thread after a fixed count of
responses, which the database checks rely on. ``ab`` sends one fixed body
(every request after the first would be a duplicate), and ``hey`` and ``oha``
are neither in Debian nor on PyPI as a plain package.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .harness import workdir

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "postmark.lua"
RESULTS = Path(__file__).resolve().parent / "results"

#: (name, path) served by the one gunicorn server.
TARGETS = (
    ("7  BounceMiddleware + Django adapter", "/postmark/bounce"),
    ("6  django-anymail tracking webhook", "/anymail/postmark/tracking/"),
    ("5  classic hand-written Django view", "/classic/postmark/bounce"),
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(port: int, workers: int, env: dict[str, str], log: Path) -> Iterator[None]:
    """Run gunicorn (sync workers) on 127.0.0.1:``port`` until the block ends."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--error-logfile",
        str(log),
        "benchmarks.django_project.wsgi:application",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start; see {log}")
            time.sleep(0.2)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def body_template(path: Path) -> Path:
    """Write the bounce body with ``__ID__`` and ``__EMAIL__`` placeholders for the Lua script."""
    from .harness import bounce_body

    payload = json.loads(bounce_body("__EMAIL__"))
    payload["ID"] = "__ID__"
    path.write_text(json.dumps(payload).replace('"__ID__"', "__ID__"))
    return path


def run_wrk(
    wrk: str, port: int, path: str, count: int, args: argparse.Namespace, template: Path, run: int
) -> dict[str, Any]:
    """One fixed-count wrk run; returns wrk's figures."""
    per_thread = max(1, count // args.threads)
    auth = base64.b64encode(b"postmark:s3cret").decode()
    command = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.max_seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        path,
        str(per_thread),
        str(template),
        str(8_000_000_000 + run * 1_000_000_000),
        "10000",
        auth,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = []
    finished = 0
    for line in process.stdout:
        lines.append(line)
        if line.startswith("WRK_THREAD_DONE"):
            finished += 1
            if finished == args.threads:
                # wrk would otherwise wait out its -d duration; SIGINT makes it report now.
                process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    output = "".join(lines)
    for line in lines:
        if line.startswith("WRK_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
            result["rps"] = result["answered"] / (result["duration_us"] / 1e6)
            return result
    raise SystemExit(f"wrk printed no result:\n{output}")


def main(argv: list[str] | None = None) -> int:
    """Start gunicorn, run wrk against each path in turn, check the database, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_load", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="per run (3000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path, interleaved (3)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (4)")
    parser.add_argument("--max-seconds", type=int, default=120, help="bound on one run (120)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", type=Path, default=RESULTS / "http.json")
    args = parser.parse_args(argv)

    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "wrk is not installed. It is Debian's wrk package: apt-get install wrk\n"
            "(this benchmark is not part of the test run)",
            file=sys.stderr,
        )
        return 2

    with workdir("bounce-http-", keep=args.keep) as path:
        return run(args, path)


def run(args: argparse.Namespace, workdir: Path) -> int:
    """The measurements, in ``workdir`` (a fresh temporary directory)."""
    wrk = shutil.which("wrk")
    assert wrk is not None  # checked by main()
    env = dict(os.environ)
    env["BOUNCE_BENCH_DB"] = os.environ["BOUNCE_BENCH_DB"] = str(workdir / "django.sqlite3")
    env["DJANGO_SETTINGS_MODULE"] = os.environ["DJANGO_SETTINGS_MODULE"] = (
        "benchmarks.django_project.settings"
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    import django

    django.setup()
    from .django_project.data import create_database
    from .rows import database_counts

    create_database(Path(env["BOUNCE_BENCH_DB"]))
    template = body_template(workdir / "body.json")
    port = free_port()
    print(
        f"gunicorn {args.workers} sync workers on 127.0.0.1:{port}; wrk {args.threads} thread(s), "
        f"{args.connections} connections, {args.requests} requests per run, "
        f"{args.repeats} runs per path; database {env['BOUNCE_BENCH_DB']}"
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in TARGETS}
    load_before = os.getloadavg()
    with gunicorn(port, args.workers, env, workdir / "gunicorn.log"):
        run_number = 0
        for repeat in range(-1, args.repeats):  # repeat -1: warm-up, not reported
            order = TARGETS[repeat % len(TARGETS) :] + TARGETS[: repeat % len(TARGETS)]
            for name, path in order:
                count = 200 if repeat < 0 else args.requests
                notices, events, _ = database_counts()
                result = run_wrk(wrk, port, path, count, args, template, run_number)
                run_number += 1
                check(name, result, notices, events, path, args.connections)
                if repeat >= 0:
                    results[name].append(result)
            if repeat >= 0:
                print(f"  repeat {repeat + 1}/{args.repeats} done")
    load_after = os.getloadavg()

    print("")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    header = f"{'row':<38} {'req/s':>8} {'(min - max)':>17} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)
    print("-" * len(header))
    summary = []
    for name, _ in TARGETS:
        runs = results[name]
        rps = [r["rps"] for r in runs]
        p50 = statistics.median(r["p50_us"] for r in runs) / 1000
        p99 = statistics.median(r["p99_us"] for r in runs) / 1000
        print(
            f"{name:<38} {statistics.median(rps):>8.0f} "
            f"{f'({min(rps):.0f} - {max(rps):.0f})':>17} {p50:>8.2f} {p99:>8.2f}"
        )
        summary.append(
            {
                "row": name,
                "rps": statistics.median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "p50_ms": p50,
                "p99_ms": p99,
                "runs": runs,
            }
        )
    print("(medians over the runs; p50/p99 are wrk's latency percentiles of each run)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "settings": vars(args) | {"json": str(args.json)},
                "load_average_before": load_before,
                "load_average_after": load_after,
                "rows": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"JSON written to {args.json}")
    return 0


def check(
    name: str, result: dict[str, Any], notices: int, events: int, path: str, slack: int
) -> None:
    """Every answer 200, no socket error, one notice (and, for row 7, one event) per answer."""
    from .rows import database_counts

    if result["not_200"] or result["errors"]:
        raise SystemExit(
            f"{name}: {result['not_200']} answers other than 200, {result['errors']} socket errors"
        )
    # Requests wrk left in flight when it stopped are still served: wait for them.
    time.sleep(0.5)
    now_notices, now_events, now_finished = database_counts()
    written = now_notices - notices
    answered = result["answered"]
    if not answered <= written <= answered + slack:
        raise SystemExit(
            f"{name}: {answered} deliveries answered 200 but {written} notices written"
        )
    stored = now_events - events
    if path == "/postmark/bounce" and stored != written:
        raise SystemExit(f"{name}: {written} notices but {stored} events stored")
    if path != "/postmark/bounce" and stored:
        raise SystemExit(f"{name}: stored {stored} events it should not have")
    if now_finished != now_events:
        raise SystemExit(f"{name}: {now_events - now_finished} events left unfinished")


if __name__ == "__main__":
    sys.exit(main())
