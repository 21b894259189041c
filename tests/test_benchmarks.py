"""The benchmark scripts keep working: smoke runs of each (no timing asserted).

Each row checks its own answers (and what it stored) before it is timed and
after every timed batch; a failing check exits non-zero naming the row. These
runs are that check, in ``--quick`` mode; the figures they print mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --quick ARGS``; its JSON output, once it succeeded."""
    result_path = Path(args[args.index("--json") + 1])
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick", *args],
        cwd=ROOT,
        # pytest-django exports the tests' settings module; the benchmarks have their own.
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results: dict[str, Any] = json.loads(result_path.read_text())
    return results


def test_comparison_smoke_run_checks_its_rows_and_allocations(tmp_path: Path) -> None:
    # Row 7 runs the Django adapter against 10,000 users; 2b has the four providers' routes.
    results = run_benchmark(
        "compare", "--only", "1a,1d,2,2b,3a,3b,4a,4c,7", "--json", str(tmp_path / "c.json")
    )
    assert {row["row"] for row in results["rows"]} == {
        "1a", "1d", "2", "2b", "3a", "3b", "4a", "4c", "7"
    }  # fmt: skip
    judged = {target["rows"] for target in results["targets"]}
    assert {"2b/1d", "4a/3a", "3b/3a"} <= judged
    # Allocation counts, unlike timings, do not depend on the machine's load.
    assert results["pass_through_extra_bytes"] == 0
    assert results["pass_through_routes_extra_bytes"] == 0


def test_providers_smoke_run_judges_every_provider_against_anymail(tmp_path: Path) -> None:
    # Before timing, every row sends forgeries (refused, nothing received) and one
    # signed bounce (received once, for the right address), on both sides.
    results = run_benchmark("providers", "--json", str(tmp_path / "p.json"))
    keys = {row["row"] for row in results["rows"]}
    for provider in ("pm", "sg", "mg", "ses"):
        assert {provider, f"{provider}-any", f"{provider}-any0"} <= keys
    judged = {r["rows"]: r for r in results["ratios"] if r["limit"] is not None}
    assert set(judged) == {"pm/pm-any", "sg/sg-any", "mg/mg-any", "ses/ses-any"}
    assert all(r["limit"] == 0.5 and r["verdict"] in ("PASS", "MISS") for r in judged.values())
    labels = {row["row"]: row["what"] for row in results["rows"]}
    # The one comparison where anymail does less: the label says so.
    assert "NO SNS signature check" in labels["ses-any"]


def test_batch_smoke_run_stores_every_event_once(tmp_path: Path) -> None:
    # Before timing: a forged batch stores nothing, each event runs once and is stored
    # finished, a redelivery runs nothing; after each batch, the counts again.
    results = run_benchmark("batch", "--json", str(tmp_path / "b.json"))
    assert {row["row"] for row in results["rows"]} == {"single", "batch", "single-0", "batch-0"}
    assert results["batch_size"] == 1000
    events = {row["row"]: row["events_per_request"] for row in results["rows"]}
    assert events["batch"] == 1000 and events["single"] == 1
    (target,) = [r for r in results["ratios"] if r["limit"] is not None]
    assert target["rows"] == "batch/single" and target["verdict"] in ("PASS", "MISS")


def test_batch_smoke_run_on_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    # SQLAlchemyStore and DjangoStore on the test session's server, with small batches.
    url = postgres.url(postgres.create_database("bench"), "postgresql+psycopg")
    results = run_benchmark(
        "batch",
        "--postgres",
        url,
        "--size",
        "20",
        "--only",
        "single-pg,batch-pg,single-dj,batch-dj",
        "--json",
        str(tmp_path / "b.json"),
    )
    assert {row["row"] for row in results["rows"]} == {
        "single-pg", "batch-pg", "single-dj", "batch-dj"
    }  # fmt: skip
    ratios = {r["rows"] for r in results["ratios"]}
    assert {"batch-pg/single-pg", "batch-dj/single-dj"} <= ratios
