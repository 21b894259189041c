"""Printing and saving the results of the provider and batch benchmarks.

Each ratio is the median of the per-repeat ratios of its two rows (both ran
within the same repeat, under the same load), with min and max beside it. A
ratio with a limit is judged PASS or MISS; one without is shown for context.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import Row

Say = Callable[[str], None]


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` (row keys), judged against ``limit`` when there is one."""

    name: str
    numerator: str
    denominator: str
    limit: float | None = None


def paired(numerator: Row, denominator: Row) -> list[float]:
    """Per-repeat ratios of two rows timed in the same repeats."""
    return [a / b for a, b in zip(numerator.samples, denominator.samples, strict=True)]


def environment() -> dict[str, Any]:
    """What the figures depend on: versions, CPUs, load."""
    try:
        import django
    except ImportError:  # the batch rows run without Django
        version = None
    else:
        version = django.get_version()
    return {
        "python": platform.python_version(),
        "django": version,
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
    }


def print_rows(
    rows: Sequence[Row],
    batches: Mapping[str, int],
    say: Say,
    *,
    unit: str = "request",
    width: int = 62,
) -> None:
    """The table: median, min and max microseconds per ``unit``, and the batch timed."""
    header = (
        f"{'row':<9} {'what':<{width}} {'median us':>10} {'min':>9} {'max':>9} {'n':>6}"
        f"  (per {unit})"
    )
    say(header)
    say("-" * len(header))
    for row in rows:
        say(
            f"{row.key:<9} {row.label:<{width}} {row.median * 1e6:>10.2f} "
            f"{min(row.samples) * 1e6:>9.2f} {max(row.samples) * 1e6:>9.2f} "
            f"{batches[row.key]:>6}"
        )


def judge(ratios: Sequence[Ratio], by_key: Mapping[str, Row], say: Say) -> list[dict[str, Any]]:
    """Print every ratio whose rows ran, PASS/MISS for those with a limit; return them."""
    results = []
    for ratio in ratios:
        if ratio.numerator not in by_key or ratio.denominator not in by_key:
            continue
        values = paired(by_key[ratio.numerator], by_key[ratio.denominator])
        median = statistics.median(values)
        verdict = "" if ratio.limit is None else ("PASS" if median <= ratio.limit else "MISS")
        limit = "" if ratio.limit is None else f"<= {ratio.limit:.2f}"
        say(
            f"  {ratio.name:<66} {median:7.3f} ({min(values):.3f} - {max(values):.3f})"
            f"  {limit:<8} {verdict}"
        )
        results.append(
            {
                "ratio": ratio.name,
                "rows": f"{ratio.numerator}/{ratio.denominator}",
                "median": median,
                "min": min(values),
                "max": max(values),
                "limit": ratio.limit,
                "verdict": verdict or None,
            }
        )
    return results


def rows_json(rows: Sequence[Row], batches: Mapping[str, int]) -> list[dict[str, Any]]:
    """The rows as the JSON output keeps them (microseconds)."""
    return [
        {
            "row": row.key,
            "what": row.label,
            "batch": batches[row.key],
            "events_per_request": row.events,
            "median_us": row.median * 1e6,
            "min_us": min(row.samples) * 1e6,
            "max_us": max(row.samples) * 1e6,
            "samples_us": [s * 1e6 for s in row.samples],
        }
        for row in rows
    ]


def save(path: Path, result: Mapping[str, Any], say: Say) -> None:
    """Write ``result`` as JSON to ``path`` (its directory made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    say(f"JSON written to {path}")
