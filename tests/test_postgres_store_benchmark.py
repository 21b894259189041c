"""``benchmarks/postgres_store.py`` keeps working: a smoke run (no timing asserted).

The script checks each row before timing it (every event stored once, finished,
its handler recorded, a redelivery DONE) and exits non-zero naming a row that
fails; this run is that check, in ``--quick`` mode, on the session's server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_checks_and_times_its_four_rows(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url(postgres.create_database("bench"))
    result = tmp_path / "pg.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.postgres_store", "--quick", "--postgres", url,
         "--json", str(result)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(result.read_text())
    assert set(figures["microseconds_per_event"]) == {
        "sqlite-1",
        "pg-1",
        "sqlite-batch",
        "pg-batch",
    }
    # Every row ran on its store: what the two stores hold is the same number of events.
    assert figures["stored"]["sqlite"] == figures["stored"]["postgres"] > 0
