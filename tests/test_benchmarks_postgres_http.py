"""``benchmarks/postgres_http.py`` keeps working: a smoke run (no timing asserted).

The benchmark checks each run of each row (every answer 200, one finished event
per answer in the row's store) and exits non-zero naming a row that fails;
this is that run in ``--quick`` mode, with the Python client (wrk is not
installed everywhere), on the session's PostgreSQL server.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks.postgres_http import ROWS, _check
from tests.postgres import PostgresServer
from tests.scale_load import Load, split
from tests.test_benchmarks import run_benchmark


def test_smoke_run_checks_and_times_four_rows_then_the_store_alone(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url(postgres.create_database("http"))
    results = run_benchmark(
        "postgres_http", "--client", "python", "--postgres", url, "--json", str(tmp_path / "h.json")
    )
    assert [row["row"] for row in results["rows"]] == list(ROWS)
    assert all(len(runs) == 1 for runs in results["runs"].values())
    for label in ROWS.values():
        assert label in results["stdout"]
    # The store-alone figures come from benchmarks.postgres_store, run in the same go.
    assert set(results["postgres_store"]["microseconds_per_event"]) == {
        "sqlite-1",
        "pg-1",
        "sqlite-batch",
        "pg-batch",
    }
    # Its URL (which may hold a password) is not written down.
    assert url not in (tmp_path / "h.json").read_text()


def test_a_run_with_an_answer_other_than_200_or_an_event_missing_is_refused() -> None:
    answered = Load(answered=10, seconds=1.0, latencies=Counter({1000: 10}))
    # Ten answers, ten finished events: accepted.
    _check("pg-1", answered, 10, (5, 5), lambda: (15, 15), slack=2)
    with pytest.raises(SystemExit, match="pg-1: 10 answered 200, 9 events stored"):
        _check("pg-1", answered, 10, (5, 5), lambda: (14, 14), slack=2)
    with pytest.raises(SystemExit, match="1 unfinished"):
        _check("pg-1", answered, 10, (5, 5), lambda: (15, 14), slack=2)
    refused = Load(answered=10, not_200=1, seconds=1.0)
    with pytest.raises(SystemExit, match="1 not 200"):
        _check("pg-2", refused, 10, (0, 0), lambda: (10, 10), slack=2)


def test_connections_are_shared_out_and_percentiles_are_nearest_rank() -> None:
    assert split(12, 3) == [4, 4, 4]
    assert split(12, 5) == [3, 3, 2, 2, 2]
    load = Load(answered=100, seconds=1.0, latencies=Counter({1000: 50, 2000: 49, 9000: 1}))
    assert (load.percentile_ms(0.5), load.percentile_ms(0.99), load.percentile_ms(1.0)) == (
        1.0,
        2.0,
        9.0,
    )
    assert load.rps == 100.0
