"""Over HTTP: the ASGI front under uvicorn, the WSGI front under gunicorn, driven by wrk.

``python -m benchmarks.asgi --http`` runs these rows after the in-process
ones: each server (one worker process: uvicorn's ``--workers 2`` loses
TCP_NODELAY here, and every answer then waits 40 ms for a delayed ACK)
serves :func:`http_app` or :func:`wsgi_app`,
whose rows are a JSON route, the bounce path without a store and with a
SQLite store; wrk posts a new Postmark bounce per request
(``benchmarks/postmark.lua``); req/s, p50 and p99 are medians over the runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bounce_middleware import BounceMiddleware, SQLiteStore

from .asgi import (
    JSON_PATH,
    PASSWORD,
    PATH,
    ROOT,
    STORED_PATH,
    USER,
    Counter,
    bounce_app,
    fastapi_app,
)
from .http_load import body_template, free_port, run_wrk


def http_app() -> Any:
    """What uvicorn serves: FastAPI's JSON route, the bounce path without a store and with one."""
    store = SQLiteStore(os.environ["BOUNCE_BENCH_STORE"])
    stored = bounce_app(Counter(), store, app=fastapi_app(), path=STORED_PATH)
    return bounce_app(Counter(), app=stored)


def wsgi_app() -> Any:
    """What gunicorn serves: the same rows through the WSGI front, a JSON answer elsewhere."""

    def json_route(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")])
        return [b'{"ok":true}']

    credentials = [f"{USER}:{PASSWORD}"]
    store = SQLiteStore(os.environ["BOUNCE_BENCH_STORE"])
    stored = BounceMiddleware(
        json_route, path=STORED_PATH, credentials=credentials, handlers=[Counter()], store=store
    )
    return BounceMiddleware(stored, path=PATH, credentials=credentials, handlers=[Counter()])


@contextmanager
def server(command: list[str], port: int, env: dict[str, str]) -> Iterator[None]:
    import urllib.error
    import urllib.request

    quiet = subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=quiet, stderr=quiet)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # answering: a 404 or 405 is fine
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{command[2]} did not start") from None
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=15)


def http_rows(tmp: Path, *, quick: bool) -> list[dict[str, Any]]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("--http needs wrk (apt-get install wrk)")
    wrk_args = argparse.Namespace(threads=1, connections=8, max_seconds=60)
    count, repeats = (300, 1) if quick else (5000, 3)
    template = body_template(tmp / "body.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BOUNCE_BENCH_STORE": str(tmp / "http.sqlite3")}
    port = free_port()
    servers = {
        "uvicorn": [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.asgi_http:http_app",
                    "--port", str(port), "--workers", "1", "--log-level", "warning",
                    "--no-access-log"],
        "gunicorn": [sys.executable, "-m", "gunicorn", "--workers", "1",
                     "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                     "benchmarks.asgi_http:wsgi_app()"],
    }  # fmt: skip
    paths = (
        ("JSON route (FastAPI / WSGI)", JSON_PATH),
        ("bounce path, no store", PATH),
        ("bounce path, SQLiteStore", STORED_PATH),
    )
    summary: list[dict[str, Any]] = []
    print(f"\nover HTTP: 1 worker each; wrk 1 thread, 8 connections, {count} requests x {repeats}")
    print(f"{'server':<9} {'row':<28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    run = 0
    for name, command in servers.items():
        with server(command, port, env):
            for label, path in paths:
                results = []
                for _ in range(repeats):
                    run += 1
                    result = run_wrk(wrk, port, path, count, wrk_args, template, run)
                    if result["not_200"] or result["errors"]:
                        raise SystemExit(f"{name} {path}: {result}")
                    results.append(result)
                row = {
                    "server": name,
                    "row": label,
                    "rps": statistics.median(r["rps"] for r in results),
                    "p50_ms": statistics.median(r["p50_us"] for r in results) / 1000,
                    "p99_ms": statistics.median(r["p99_us"] for r in results) / 1000,
                }
                figures = f"{row['rps']:>8.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
                print(f"{name:<9} {label:<28} {figures}")
                summary.append(row)
    return summary
