"""The ``postgresql`` test alias's engine: Django's own backend (psycopg 3), started lazily.

Django's documented way to adjust a backend is to subclass it. This one only
fills in the host, port and user of the test session's server
(``tests/postgres.py``) at connect time, so the server starts when a test that
asked for the ``postgresql`` alias first connects (pytest-django creates its
test database only then), and never for a run that does not ask for it.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper

from tests import postgres


class DatabaseWrapper(PostgreSQLWrapper):
    """``django.db.backends.postgresql`` with the test server's address filled in."""

    def get_connection_params(self) -> dict[str, Any]:
        """Django's parameters, plus where the (possibly just started) test server listens."""
        params: dict[str, Any] = super().get_connection_params()
        server = postgres.server()
        params.setdefault("host", server.host)
        params.setdefault("port", server.port)
        params.setdefault("user", server.user)
        return params
