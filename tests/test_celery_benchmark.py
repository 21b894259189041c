"""``benchmarks/celery_handoff.py`` keeps working: a smoke run (no timing asserted).

The script checks each row before timing it (a bounce answered 200, recorded
once, its 200 ms handler run: in the request, or by the Celery worker) and exits
non-zero naming a row that fails; this run is that check, in ``--quick`` mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_checks_and_times_both_rows(tmp_path: Path) -> None:
    result = tmp_path / "celery.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.celery_handoff", "--quick", "--json", str(result)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(result.read_text())
    assert set(figures["rows"]) == {"inline", "handoff"}
    # The inline row waited for its handler: every answer took the handler's 200 ms.
    assert figures["rows"]["inline"]["p50"] >= 0.2
    assert set(figures["verdicts"]) == {"p99", "req_s"}
    assert "p99 handoff/inline" in done.stdout and "req/s handoff/inline" in done.stdout
