"""The benchmark scripts keep working: smoke runs of each (no timing asserted).

Each row checks its own answers (and what it stored) before it is timed and
after every timed batch; a failing check exits non-zero naming the row. These
runs are that check, in ``--quick`` mode; the figures they print mean nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --quick ARGS``; its JSON output, once it succeeded.

    What it printed is under ``"stdout"``.
    """
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
    results["stdout"] = completed.stdout
    return results


def printed_verdict(stdout: str, ratio: str) -> str:
    """The PASS/MISS printed on the line of ``ratio`` (its name), failing if none is."""
    shape = re.compile(rf"\s+{re.escape(ratio)}\s+\d+\.\d{{3}} \(")
    lines = [line for line in stdout.splitlines() if shape.match(line)]
    assert len(lines) == 1, f"{ratio!r} printed {len(lines)} times:\n{stdout}"
    verdict = lines[0].split()[-1]
    assert verdict in ("PASS", "MISS"), lines[0]
    return verdict


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


#: Row keys of the provider benchmark -> the provider's name in its ratios.
PROVIDERS = {
    "pm": "Postmark",
    "sg": "SendGrid",
    "mg": "Mailgun",
    "ses": "Amazon SES",
    "mj": "Mailjet",
    "sp": "SparkPost",
    "bv": "Brevo",
    "rs": "Resend",
    "md": "Mandrill",
}


def test_providers_smoke_run_judges_every_provider_against_anymail(tmp_path: Path) -> None:
    # Before timing, every row sends forgeries (refused, nothing received) and one
    # signed bounce (received once, for the right address), on both sides: a failed
    # check exits non-zero. Issue 13's five providers are judged as issue 12's four.
    results = run_benchmark("providers", "--json", str(tmp_path / "p.json"))
    stdout = results["stdout"]
    assert "checked 28 rows: forgeries refused, one event received per bounce" in stdout
    keys = {row["row"] for row in results["rows"]}
    for provider in PROVIDERS:
        assert {provider, f"{provider}-any", f"{provider}-any0"} <= keys
    judged = {r["rows"]: r for r in results["ratios"] if r["limit"] is not None}
    assert set(judged) == {f"{key}/{key}-any" for key in PROVIDERS}
    for key, name in PROVIDERS.items():
        ratio = judged[f"{key}/{key}-any"]
        assert ratio["limit"] == 0.5 and ratio["ratio"] == f"{name}: middleware / django-anymail"
        assert printed_verdict(stdout, ratio["ratio"]) == ratio["verdict"]
    labels = {row["row"]: row["what"] for row in results["rows"]}
    # The one comparison where anymail does less: the label says so.
    assert "NO SNS signature check" in labels["ses-any"]
    # Both sides of the signed new providers check the same thing.
    assert "Svix signature" in labels["rs"] and "Svix signature" in labels["rs-any"]
    assert "configured URL" in labels["md"] and "configured URL" in labels["md-any"]


def test_batch_smoke_run_stores_every_event_once(tmp_path: Path) -> None:
    # Before timing: a forged batch stores nothing, each event runs once and is stored
    # finished, a redelivery runs nothing; after each batch, the counts again. SendGrid
    # (issue 12) and Mandrill (issue 13) through the same SQLite store.
    results = run_benchmark("batch", "--json", str(tmp_path / "b.json"))
    stdout = results["stdout"]
    assert "checked 8 rows: each event run once and stored finished" in stdout
    assert {row["row"] for row in results["rows"]} == {
        "single", "batch", "single-0", "batch-0",
        "md-single", "md-batch", "md-single-0", "md-batch-0",
    }  # fmt: skip
    assert results["batch_size"] == 1000
    events = {row["row"]: row["events_per_request"] for row in results["rows"]}
    assert events["batch"] == events["md-batch"] == 1000
    assert events["single"] == events["md-single"] == 1
    targets = {r["rows"]: r for r in results["ratios"] if r["limit"] is not None}
    assert set(targets) == {"batch/single", "md-batch/md-single"}
    for target in targets.values():
        assert target["limit"] == 0.25
        assert printed_verdict(stdout, target["ratio"]) == target["verdict"]
    assert "Mandrill" in targets["md-batch/md-single"]["ratio"]
    assert results["mandrill_target_by_store_size"]


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
