"""The ``scope=`` context around one delivery, left and entered again after a failed handler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack

from .text import loggable

logger = logging.getLogger("bounce_middleware")

ScopeFactory = Callable[[], AbstractContextManager[object]]


class DeliveryScope:
    """Enters ``factory()`` (if any) around a delivery; never lets its failures escape.

    A scope is the application's per-request housekeeping (Flask's app context,
    Django's connection handling). A failed handler may leave it dirty (an
    uncommitted session holding a lock, half-done writes), so :meth:`renew`
    leaves it and enters a fresh one before anything else runs. A scope that
    fails to enter, renew or leave is logged in one line, naming only the
    exception class: its message may quote the application's data.
    """

    __slots__ = ("_factory", "_key", "_stack")

    def __init__(self, factory: ScopeFactory | None, key: str) -> None:
        self._factory = factory
        self._key = key
        self._stack = ExitStack() if factory is not None else None

    def enter(self) -> bool:
        """Enter the scope; False (logged) when it could not be entered."""
        if self._factory is None or self._stack is None:
            return True
        try:
            self._stack.enter_context(self._factory())
        except Exception as exc:
            self._log("could not be entered", exc)
            return False
        return True

    def renew(self) -> bool:
        """Leave the scope and enter a fresh one; False (logged) when that failed."""
        return self.close() and self.enter()

    def close(self) -> bool:
        """Leave the scope; False (logged) when leaving it raised."""
        if self._stack is None:
            return True
        try:
            self._stack.close()
        except Exception as exc:
            self._log("failed on leaving", exc)
            return False
        return True

    def _log(self, what: str, exc: Exception) -> None:
        logger.error(
            "bounce %s: the delivery scope %s (%s)", loggable(self._key), what, type(exc).__name__
        )
