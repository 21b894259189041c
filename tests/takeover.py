"""Two overlapping deliveries of one event, each in a thread named ``A`` or ``B``, held at
named points (the lease-takeover tests of the Django and SQLAlchemy adapters)."""

from __future__ import annotations

import threading

#: Seconds: the longest any step may take before the test fails.
WAIT = 15.0


class Pauses:
    """Points where a delivery (a thread named ``A`` or ``B``) waits for the test."""

    def __init__(self, *points: tuple[str, str]) -> None:
        self.points = {point: (threading.Event(), threading.Event()) for point in points}

    def __call__(self, where: str) -> None:
        """Called by a handler at ``where``: waits there if the test asked it to."""
        events = self.points.get((threading.current_thread().name, where))
        if events is not None:
            events[0].set()
            assert events[1].wait(WAIT), f"never released at {where}"

    def reached(self, who: str, where: str) -> None:
        """Wait until delivery ``who`` waits at ``where``."""
        assert self.points[(who, where)][0].wait(WAIT), f"{who} never reached {where}"

    def release(self, who: str, where: str) -> None:
        """Let delivery ``who`` go on from ``where``."""
        self.points[(who, where)][1].set()
