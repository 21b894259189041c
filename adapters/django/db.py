"""Database connections around work done outside Django's request cycle.

Django closes or recycles connections on ``request_started`` and
``request_finished``. The bounce endpoint answers before Django's handler
runs, so those signals never fire for it; :func:`connection_scope` does the
same work around one webhook delivery instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connections

_depth: ContextVar[int] = ContextVar("bounce_middleware_connection_depth", default=0)


def close_old_connections() -> None:
    """Django's ``close_old_connections``, sparing a connection inside a transaction.

    A connection in an ``atomic`` block belongs to code that called us (a
    test, a management command); closing it would break that transaction.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


@contextmanager
def connection_scope() -> Iterator[None]:
    """Close unusable or expired connections before and after the outermost scope.

    Nested scopes (the handler inside the middleware's delivery) do nothing,
    so one delivery uses one connection even with ``CONN_MAX_AGE = 0``.
    """
    depth = _depth.get()
    if depth == 0:
        close_old_connections()
    token = _depth.set(depth + 1)
    try:
        yield
    finally:
        _depth.reset(token)
        if depth == 0:
            close_old_connections()
