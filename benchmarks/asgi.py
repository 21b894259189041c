"""The ASGI front, in process and over HTTP: pass-through, and the bounce path against FastAPI.

Run from the repository root::

    python -m benchmarks.asgi              # in process, ~1 minute
    python -m benchmarks.asgi --http       # and over HTTP: uvicorn and gunicorn driven by wrk

In process, every row is a batch of ASGI calls on one event loop, made the
way a server makes them (a scope, ``receive`` giving the body, ``send``
collecting the answer), with every scope and body built before the clock
starts. Within each repeat every row runs half its batch, in a rotated
order, then the other half in the reverse order; each ratio is the median
of the per-repeat ratios, with min and max. Every row is
checked (status, handler calls) before it is timed.

Over HTTP (``--http``, needs Debian's ``wrk``; :mod:`benchmarks.asgi_http`),
``uvicorn`` (ASGI) and ``gunicorn`` (WSGI, sync workers) serve the same
rows, one worker each; wrk posts a new Postmark bounce per request
(``benchmarks/postmark.lua``), and the req/s, p50 and p99 are the medians
over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bounce_middleware import Bounce, SQLiteStore
from bounce_middleware.asgi import BounceMiddleware as ASGIBounceMiddleware
from bounce_middleware.asgi import Message, Receive, Scope, Send
from bounce_middleware.testing import basic_auth_header

from .harness import bounce_body, workdir

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
PATH, STORED_PATH, JSON_PATH, PAGE = "/postmark/bounce", "/stored/bounce", "/json", "/page"
USER, PASSWORD = "postmark", "s3cret"  # what benchmarks/postmark.lua sends
TARGETS = (  # (name, numerator, denominator, limit); the two, then context
    ("pass-through vs hand-written path check", "p2", "p1", 1.10),
    ("bounce path, no store, threads=False vs FastAPI async", "b0", "f1", 1.00),
    ("bounce path, no store (thread) vs FastAPI async", "b1", "f1", 1.00),
    ("bounce path, no store (thread) vs FastAPI def", "b1", "f2", 1.00),
    ("bounce path, async def handler vs FastAPI async", "b2", "f1", 1.00),
)


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The application behind every middleware: a fixed 200."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"the page"})


class PathCheck:
    """The hand-written ASGI middleware a user would write: one path check, then the app."""

    __slots__ = ("app", "path")

    def __init__(self, app: Any, path: str) -> None:
        self.app, self.path = app, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"hook"})
            return
        await self.app(scope, receive, send)


def fastapi_app() -> Any:
    """FastAPI's trivial JSON routes: ``async def`` on /json, ``def`` on /sync-json."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post(JSON_PATH)
    async def route() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/sync-json")
    def sync_route() -> dict[str, bool]:
        return {"ok": True}

    return app


class Counter:
    """A no-op handler counting its calls (a sync one, and an async one)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, bounce: Bounce) -> None:
        self.calls += 1

    async def async_handler(self, bounce: Bounce) -> None:
        self.calls += 1


def bounce_app(
    handler: Any, store: Any = None, *, app: Any = bare_app, path: str = PATH, threads: bool = True
) -> ASGIBounceMiddleware:
    """The ASGI middleware with one Postmark route, a no-op ``handler`` and ``store``."""
    return ASGIBounceMiddleware(
        app,
        path=path,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[handler],
        store=store,
        threads=threads,
    )


def scope(method: str, path: str, body: bytes) -> tuple[Scope, bytes]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", basic_auth_header(USER, PASSWORD).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers if method == "POST" else headers[:3],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }, body


async def drive(app: Any, requests: list[tuple[Scope, bytes]]) -> list[int]:
    """Call ``app`` once per request, as a server does; the statuses."""
    statuses = []
    for request_scope, body in requests:
        sent: list[Message] = []

        async def receive(body: bytes = body) -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        await app(request_scope, receive, send)
        statuses.append(sent[0]["status"])
    return statuses


@dataclass
class Row:
    key: str
    label: str
    app: Any
    method: str
    path: str
    calls: Callable[[], int] | None = None  # the handler's count, checked after each batch

    def requests(self, n: int) -> list[tuple[Scope, bytes]]:
        return [
            scope(
                self.method,
                self.path,
                bounce_body(f"user{i}@example.com") if self.method == "POST" else b"",
            )
            for i in range(n)
        ]


def rows(store_dir: Path) -> list[Row]:
    """Every in-process row; each bounce row's handler counts its calls."""
    inline, threaded, awaited, stored = Counter(), Counter(), Counter(), Counter()
    store = SQLiteStore(store_dir / "bounces.sqlite3")
    return [
        Row("p0", "bare ASGI app (reference)", bare_app, "GET", PAGE),
        Row("p1", "hand-written ASGI path check around it", PathCheck(bare_app, PATH), "GET", PAGE),
        Row("p2", "ASGI BounceMiddleware, pass-through", bounce_app(Counter()), "GET", PAGE),
        Row("f1", "FastAPI trivial JSON route (async def)", fastapi_app(), "POST", JSON_PATH),
        Row("f2", "FastAPI trivial JSON route (def: threads)", fastapi_app(), "POST", "/sync-json"),
        Row("b0", "bounce path, no store, threads=False", bounce_app(inline, threads=False),
            "POST", PATH, lambda: inline.calls),
        Row("b1", "bounce path, no store (worker thread)", bounce_app(threaded),
            "POST", PATH, lambda: threaded.calls),
        Row("b2", "bounce path, no store, async def handler", bounce_app(awaited.async_handler),
            "POST", PATH, lambda: awaited.calls),
        Row("b3", "bounce path, SQLiteStore (worker thread)", bounce_app(stored, store),
            "POST", PATH, lambda: stored.calls),
    ]  # fmt: skip


async def measure(all_rows: list[Row], repeats: int, batch: int) -> dict[str, list[float]]:
    """Per-request µs of every row in every repeat, rows rotated within each repeat."""
    timings: dict[str, list[float]] = {row.key: [] for row in all_rows}
    expected = {row.key: 0 for row in all_rows}
    for row in all_rows:  # checked before timing, warmed up
        statuses = await drive(row.app, row.requests(20))
        assert set(statuses) == {200}, f"{row.key}: answered {statuses}"
        expected[row.key] += 20
        assert row.calls is None or row.calls() == expected[row.key], f"{row.key}: handler calls"
    for repeat in range(repeats):
        order = all_rows[repeat % len(all_rows) :] + all_rows[: repeat % len(all_rows)]
        spent = {row.key: 0.0 for row in all_rows}
        # Each row's batch in two halves, the rows in order then in reverse (A B ... B A):
        # a load that rises or falls during the repeat weighs on every row alike.
        for half in (order, order[::-1]):
            for row in half:
                # A pass-through call takes about 1 µs: 25 times the batch, or noise is timed.
                size = batch * (25 if row.method == "GET" else 1) // 2
                requests = row.requests(size)
                start = time.perf_counter()
                statuses = await drive(row.app, requests)
                spent[row.key] += (time.perf_counter() - start) / size * 1e6 / 2
                expected[row.key] += size
                assert set(statuses) == {200}, f"{row.key}: answered {set(statuses)}"
                assert row.calls is None or row.calls() == expected[row.key], f"{row.key}: calls"
        for key, us in spent.items():
            timings[key].append(us)
    return timings


def ratios(timings: dict[str, list[float]], numerator: str, denominator: str) -> list[float]:
    return [n / d for n, d in zip(timings[numerator], timings[denominator], strict=True)]


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the ratios, write the JSON."""
    parser = argparse.ArgumentParser(description="The ASGI front's benchmark rows.")
    parser.add_argument("--quick", action="store_true", help="a short run (figures indicative)")
    parser.add_argument("--http", action="store_true", help="also over HTTP (needs wrk)")
    parser.add_argument("--json", type=Path, default=RESULTS / "asgi.json")
    args = parser.parse_args(argv)
    repeats, batch = (3, 50) if args.quick else (21, 400)
    with workdir("bench-asgi-", keep=False) as tmp:
        all_rows = rows(tmp)
        load = os.getloadavg()[0]
        timings = asyncio.run(measure(all_rows, repeats, batch))
        print(f"in process: {repeats} repeats of {batch} requests per row; load {load:.2f}")
        print(f"{'row':<4} {'':<44} {'µs/request':>10} {'(min - max)':>17}")
        for row in all_rows:
            t = timings[row.key]
            spread = f"({min(t):.1f} - {max(t):.1f})"
            print(f"{row.key:<4} {row.label:<44} {statistics.median(t):>10.1f} {spread:>17}")
        results: dict[str, Any] = {
            "load_average": load,
            "rows": {r.key: {"label": r.label, "us": timings[r.key]} for r in all_rows},
            "targets": [],
        }
        print("\nratios (medians of the per-repeat ratios)")
        for name, numerator, denominator, limit in TARGETS:
            r = ratios(timings, numerator, denominator)
            median = statistics.median(r)
            verdict = "PASS" if median <= limit else "MISS"
            print(
                f"  {name:<53} {median:.3f} ({min(r):.3f} - {max(r):.3f}) "
                f"{numerator}/{denominator} <= {limit:.2f} {verdict}"
            )
            results["targets"].append(
                {"name": name, "ratio": median, "min": min(r), "max": max(r), "verdict": verdict}
            )
        if args.http:
            from .asgi_http import http_rows

            results["http"] = http_rows(tmp, quick=args.quick)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
