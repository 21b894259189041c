"""A handler that fails on demand, to test failure and retry."""

from __future__ import annotations

from bounce_middleware.model import Bounce

#: How many more calls raise; the tests set it.
failures_left = 0
calls: list[str] = []


def flaky(bounce: Bounce) -> None:
    """Raise while ``failures_left`` is positive; record each successful call."""
    global failures_left
    if failures_left > 0:
        failures_left -= 1
        raise RuntimeError("flaky handler failed on purpose")
    calls.append(bounce.key)
