"""The benchmark scripts keep working: a smoke run of the comparison (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_comparison_smoke_run_checks_its_rows_and_allocations(tmp_path: Path) -> None:
    result_path = tmp_path / "compare.json"
    # Each row checks its own answers and rows written before it is timed; a failing
    # check exits non-zero. Row 7 runs the Django adapter against 10,000 users.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.compare",
            "--quick",
            "--only",
            "1a,2,3a,3b,4a,4c,7",
            "--json",
            str(result_path),
        ],
        cwd=ROOT,
        # pytest-django exports the tests' settings module; the benchmark has its own.
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads(result_path.read_text())
    assert {row["row"] for row in results["rows"]} >= {"1a", "2", "3a", "4a", "4c", "7"}
    # Allocation counts, unlike timings, do not depend on the machine's load.
    assert results["pass_through_extra_bytes"] == 0
