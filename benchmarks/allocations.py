"""What the pass-through path allocates per request, measured with :mod:`tracemalloc`.

Two measures, each for the app alone and for the app behind ``BounceMiddleware``:

- *peak*: the highest traced memory during one call above what was traced
  before it, the largest over many calls. Memory allocated and freed within
  the call counts, so a temporary object made by the middleware would show.
- *kept*: blocks still allocated after many calls whose results are kept,
  attributed to the middleware's own source file.

The bounce path is measured the same way, as a control that the method sees
allocations where there are some.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bounce_middleware.middleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

_MIDDLEWARE_FILE = str(Path(bounce_middleware.middleware.__file__).resolve())


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


@dataclass
class Allocation:
    """Bytes traced during one call at most, and blocks the middleware kept."""

    label: str
    peak_bytes: int
    middleware_blocks_kept: int

    def as_dict(self) -> dict[str, Any]:
        """For the JSON output."""
        return asdict(self)


def measure(
    label: str,
    app: WSGIApplication,
    make_environ: Callable[[], WSGIEnvironment],
    calls: int = 2000,
) -> Allocation:
    """Trace ``calls`` calls of ``app`` (environs made beforehand)."""
    environs = [make_environ() for _ in range(calls)]
    for environ in environs[:50]:  # warm caches (interned strings, method caches)
        app(dict(environ), _start_response)
    environs = environs[50:]
    kept: list[Any] = []
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        peak = 0
        for environ in environs:
            current = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            result = app(environ, _start_response)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - current)
            kept.append(result)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    only_middleware = [tracemalloc.Filter(True, _MIDDLEWARE_FILE)]
    diff = after.filter_traces(only_middleware).compare_to(
        before.filter_traces(only_middleware), "filename"
    )
    blocks = sum(max(stat.count_diff, 0) for stat in diff)
    return Allocation(label, peak, blocks)
