"""The webhook with a 200 ms handler: run inline in the request, or handed off to Celery.

Run from the repository root (Redis and a Celery worker are started for the run)::

    pip install -e ".[bench]" && python -m benchmarks.celery_handoff

Two rows: the same app on gunicorn (2 gthread workers of 8 threads, 127.0.0.1),
one Postmark route, a :class:`~bounce_middleware.SQLiteStore` (WAL), one handler
that sleeps 200 ms, a solo ``celery worker`` beside it. ``inline`` runs the handler
in the request; ``handoff`` (``handoff=CeleryHandoff(app)``, Redis) records the
event and queues its key, and the worker runs the handler. Each row, warmed up,
is loaded twice with new events on keep-alive connections: at ``--rate`` requests/s
(10 by default; about two in flight for sixteen request slots, so an inline request
never waits for a thread), p50/p99 timed from each request's due time; then
``--clients`` threads back to back: req/s (and p99 under that saturation, for
context). The rows alternate over ``--repeats``; each ratio is the median of the
per-repeat ratios, judged: handoff p99 <= 0.1x inline, handoff req/s >= 5x inline.
Each row is first checked: a bounce answered 200, recorded once, its handler run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bounce_middleware import BounceMiddleware, SQLiteStore
from bounce_middleware.testing import postmark_bounce

from .harness import workdir

ROOT = Path(__file__).resolve().parent.parent
PATH = "/hooks/postmark"
USER, PASSWORD = "postmark", "benchmark-celery-webhook-password"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
HANDLER_SECONDS = 0.2
QUEUE = "bounce-bench"
_ids = itertools.count(1)


def slow(bounce: Any) -> None:
    """The handler: 200 ms of someone else's service."""
    time.sleep(HANDLER_SECONDS)


def _root(environ: Any, start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application\n"]


def create_app() -> BounceMiddleware:
    """What gunicorn serves (``BENCH_MODE`` inline or handoff, ``BENCH_STORE`` a file)."""
    handoff = None
    if os.environ["BENCH_MODE"] == "handoff":
        from bounce_middleware.celery_tasks import CeleryHandoff

        handoff = CeleryHandoff(celery)
    return BounceMiddleware(
        _root,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[slow],
        store=SQLiteStore(os.environ["BENCH_STORE"]),
        handoff=handoff,
    )


if os.environ.get("BENCH_BROKER"):  # gunicorn's and the worker's process
    from celery import Celery

    celery = Celery("bounce_bench", broker=os.environ["BENCH_BROKER"])
    celery.conf.update(task_default_queue=QUEUE, worker_prefetch_multiplier=1)
    if os.environ.get("BENCH_WORKER"):
        worker_middleware = create_app()


def _env(broker: str, store: Path, mode: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    given = {"BENCH_BROKER": broker, "BENCH_STORE": str(store), "BENCH_MODE": mode}
    return {**env, **given, "PYTHONPATH": path, **extra}


@contextmanager
def serve(broker: str, store: Path, mode: str) -> Iterator[int]:
    """gunicorn serving :func:`create_app` on a free port, and a solo ``celery worker``
    beside it, once ready; yields the port. Logs beside ``store``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    log, worker_log = store.with_suffix(".log"), store.with_suffix(".worker.log")
    with log.open("wb") as out, worker_log.open("wb") as worker_out:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "gunicorn", f"--bind=fd://{listener.fileno()}",
                 "--workers=2", "--worker-class=gthread", "--threads=8",
                 "--log-level=warning", "benchmarks.celery_handoff:create_app()"],
                pass_fds=[listener.fileno()], env=_env(broker, store, mode), cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "benchmarks.celery_handoff:celery",
                 "worker", "-P", "solo", "-Q", QUEUE, "--without-gossip", "--without-mingle",
                 "--without-heartbeat", "-l", "INFO"],
                env=_env(broker, store, "handoff", BENCH_WORKER="1"), cwd=ROOT,
                stdout=worker_out, stderr=subprocess.STDOUT,
            ),
        ]  # fmt: skip
    port: int = listener.getsockname()[1]
    listener.close()
    try:
        _wait(lambda: " ready." in worker_log.read_text(errors="replace"), "worker", worker_log)
        yield port
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


def _wait(condition: Any, what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not ready in {timeout} s\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def post(conn: http.client.HTTPConnection) -> tuple[int, str, float]:
    """POST one new bounce on ``conn``; status, body, seconds."""
    body = json.dumps(postmark_bounce(ID=next(_ids), Email="user@example.com")).encode()
    started = time.perf_counter()  # the connection's set-up included
    conn.request("POST", PATH, body, {"Authorization": AUTH, "Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read().decode()
    return response.status, text.strip(), time.perf_counter() - started


def load(port: int, threads: int, seconds: float, rate: float | None) -> list[float]:
    """Post new bounces for ``seconds`` from ``threads`` threads (one keep-alive connection
    each): back to back (``rate`` None), or at ``rate`` requests/s in all, each timed from
    its due time (a late client adds its lateness). Returns every answer time."""
    times: list[list[float]] = [[] for _ in range(threads)]
    failures: list[str] = []
    start = threading.Barrier(threads + 1)
    began = [0.0]
    slots = itertools.count()

    def client(mine: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while True:
            due = None
            if rate is not None:
                due = began[0] + next(slots) / rate
                time.sleep(max(0.0, due - time.perf_counter()))
            if time.perf_counter() >= began[0] + seconds:
                break
            status, text, took = post(conn)
            if status != 200:
                failures.append(f"{status} {text}")
            mine.append(took if due is None else time.perf_counter() - due)
        conn.close()

    clients = [threading.Thread(target=client, args=(t,)) for t in times]
    for thread in clients:
        thread.start()
    began[0] = time.perf_counter()
    start.wait()
    for thread in clients:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return [t for mine in times for t in mine]


def check(port: int, mode: str, store: Path) -> None:
    """One bounce: 200, recorded once, its handler run (by the worker for handoff)."""
    _wait(lambda: _listening(port), "gunicorn", store.with_suffix(".log"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    status, text, _ = post(conn)
    expected = "accepted" if mode == "inline" else "accepted; queued for the handlers"
    if (status, text) != (200, expected):
        raise SystemExit(f"{mode}: answered {status} {text!r}, expected 200 {expected!r}")
    reader = SQLiteStore(store)
    deadline = time.monotonic() + 30
    while reader.records(unfinished=True, limit=None):
        if time.monotonic() > deadline:
            raise SystemExit(f"{mode}: the checked bounce was never finished")
        time.sleep(0.05)
    records = reader.records(limit=None)
    if len(records) != 1 or records[0].completed != {"benchmarks.celery_handoff.slow"}:
        raise SystemExit(f"{mode}: expected one finished record, found {records}")
    reader.close()
    conn.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0.99: p99), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    """Run both rows, print the figures and the judged ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per load, row and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s for answer times")
    parser.add_argument("--clients", type=int, default=4, help="threads for throughput")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 3 s (a smoke run)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/celery.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 3.0, 1
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    rows: dict[str, list[dict[str, float]]] = {"inline": [], "handoff": []}
    with workdir("bounce-celery-bench-", keep=False) as tmp:
        redis = RedisServer()
        redis.start()
        try:
            for repeat in range(args.repeats):
                order = ("inline", "handoff") if repeat % 2 == 0 else ("handoff", "inline")
                for mode in order:
                    store = tmp / f"{mode}-{repeat}.sqlite3"
                    with serve(redis.url, store, mode) as port:
                        check(port, mode, store)
                        # Warm: each gunicorn worker's first request connects to the broker.
                        load(port, 8, 1.0, None)
                        paced = load(port, 8, args.seconds, args.rate)
                        started = time.perf_counter()
                        saturated = load(port, args.clients, args.seconds, None)
                        elapsed = time.perf_counter() - started
                    row = {
                        "p50": percentile(paced, 0.5),
                        "p99": percentile(paced, 0.99),
                        "req_s": len(saturated) / elapsed,
                        "p99_saturated": percentile(saturated, 0.99),
                    }
                    rows[mode].append(row)
                    print(f"{mode:8} repeat {repeat + 1}: at {args.rate:g}/s p50 "
                          f"{row['p50'] * 1000:6.1f} ms p99 {row['p99'] * 1000:6.1f} ms; "
                          f"{row['req_s']:6.1f} req/s "
                          f"(p99 {row['p99_saturated'] * 1000:.1f} ms)")  # fmt: skip
        finally:
            redis.close()
    return report(rows, args)


def report(rows: dict[str, list[dict[str, float]]], args: Any) -> int:
    """Print medians and the judged ratios; save them as JSON."""
    names = ("p50", "p99", "req_s", "p99_saturated")
    median = {m: {n: statistics.median(r[n] for r in rs) for n in names} for m, rs in rows.items()}
    pairs = list(zip(rows["handoff"], rows["inline"], strict=True))
    p99 = [h["p99"] / i["p99"] for h, i in pairs]
    rate = [h["req_s"] / i["req_s"] for h, i in pairs]
    p99_ratio, rate_ratio = statistics.median(p99), statistics.median(rate)
    print(f"\n{'row':8} {'p50 ms':>8} {'p99 ms':>8} (at {args.rate:g}/s)  {'req/s':>8} "
          f"{'p99 ms':>8} ({args.clients} clients)")  # fmt: skip
    for mode, m in median.items():
        print(f"{mode:8} {m['p50'] * 1000:8.1f} {m['p99'] * 1000:8.1f} {'':12} {m['req_s']:8.1f} "
              f"{m['p99_saturated'] * 1000:8.1f}")  # fmt: skip
    p99_verdict = "PASS" if p99_ratio <= 0.1 else "MISS"
    rate_verdict = "PASS" if rate_ratio >= 5 else "MISS"
    print(f"p99 handoff/inline   {p99_ratio:6.3f}x  (min {min(p99):.3f}, max {max(p99):.3f}) "
          f"target <= 0.1x  {p99_verdict}")  # fmt: skip
    print(f"req/s handoff/inline {rate_ratio:6.1f}x  (min {min(rate):.1f}, max {max(rate):.1f}) "
          f"target >= 5x    {rate_verdict}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": median,
        "ratios": {"p99": p99_ratio, "req_s": rate_ratio},
        "verdicts": {"p99": p99_verdict, "req_s": rate_verdict},
        "rate": args.rate,
        "clients": args.clients,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    args.json.write_text(json.dumps(result, indent=2))
    print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
