"""The ASGI benchmark keeps working: a smoke run (no timing asserted), and its HTTP apps.

Each row is checked (every answer 200, the handler called once per request)
before and while it is timed; a failed check exits non-zero. The HTTP rows'
servers need wrk, so their apps are called here in process instead.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from benchmarks.asgi import JSON_PATH, PATH, STORED_PATH, TARGETS, drive, scope
from benchmarks.harness import bounce_body, post_environ
from tests.test_benchmarks import printed_verdict, run_benchmark


def test_smoke_run_prints_every_ratio_with_a_verdict(tmp_path: Path) -> None:
    results = run_benchmark("asgi", "--json", str(tmp_path / "a.json"))
    assert set(results["rows"]) == {"p0", "p1", "p2", "f1", "f2", "b0", "b1", "b2", "b3"}
    assert [t["name"] for t in results["targets"]] == [name for name, *_ in TARGETS]
    for name, *_ in TARGETS:
        printed_verdict(results["stdout"], name)


def test_the_http_rows_apps_answer_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOUNCE_BENCH_STORE", str(tmp_path / "http.sqlite3"))
    from benchmarks.asgi_http import http_app, wsgi_app

    asgi = http_app()
    paths = (JSON_PATH, PATH, STORED_PATH)
    requests = [scope("POST", path, bounce_body("ann@example.com")) for path in paths]
    assert asyncio.run(drive(asgi, requests)) == [200, 200, 200]
    wsgi = wsgi_app()
    started: list[str] = []
    for path in paths:
        environ = post_environ(path, bounce_body("ann@example.com"), "postmark", "s3cret")
        b"".join(wsgi(environ, lambda status, headers: started.append(status)))
    assert started == ["200 OK"] * 3
    assert os.path.getsize(tmp_path / "http.sqlite3") > 0
