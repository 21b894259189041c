"""Two overlapping deliveries of one event, each in a thread, held where a test says.

For ``tests/test_django_takeover.py``: delivery ``A`` claims the event with a
short lease and is held back until the lease expired, delivery ``B`` then
takes it over. Handlers call a :class:`Pauses` at named points; a thread named
``A`` or ``B`` waits there until the test releases it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from django.db import connections
from webtest import TestApp

from tests.django_app.support import post_bounce
from tests.takeover import WAIT, Pauses

__all__ = ["WAIT", "Pauses", "Post", "pausing_at"]


@contextmanager
def pausing_at(db: str, pause: Pauses, where: str, verb: str, *, before: bool) -> Iterator[None]:
    """In this thread, call ``pause(where)`` ``before`` (or after) each statement on the
    events table of ``db`` that starts with ``verb``: e.g. after the completion's
    ``UPDATE`` (prepared or through the ORM) and before its transaction commits, or
    before a claim's ``UPDATE`` that takes an expired lease over."""

    def wrapper(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        matches = sql.lstrip().upper().startswith(verb) and "bounceevent" in sql
        if matches and before:
            pause(where)
        result = execute(sql, *args)
        if matches and not before:
            pause(where)
        return result

    with connections[db].execute_wrapper(wrapper):
        yield


class Post(threading.Thread):
    """One delivery of ``payload``, in a thread of its own; its answer once joined."""

    def __init__(
        self,
        app: TestApp[Any],
        name: str,
        payload: dict[str, Any],
        around: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.app = app
        self.payload = payload
        self.around = around  # entered in the thread, around the delivery
        self.answer: tuple[int, str] | None = None

    def run(self) -> None:
        try:
            with self.around():
                response = post_bounce(self.app, self.payload, status="*")
            self.answer = (response.status_int, response.text)
        finally:
            connections.close_all()

    def result(self) -> tuple[int, str]:
        """The status and text of the answer, once the delivery ended."""
        self.join(WAIT)
        assert self.answer is not None, f"delivery {self.name} did not answer"
        return self.answer
