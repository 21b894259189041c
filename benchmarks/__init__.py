"""Performance scripts: the in-process comparison table, allocations, and the HTTP run.

Not part of the test run. ``python -m benchmarks.compare`` prints the table.
"""

from __future__ import annotations
