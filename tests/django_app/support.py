"""What the Django test modules share: posting bounces, signing in, the PostgreSQL router,
ending a PostgreSQL connection from the server's side."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from django.db import connections
from django.db.models import Model
from django.test import override_settings
from webtest import TestApp

from bounce_middleware.testing import auth_headers
from tests import postgres
from tests.django_settings import WEBHOOK_PASSWORD

PATH = "/postmark/bounce"
#: Both database aliases of the test settings, for ``parametrize`` and fixture ``params``:
#: each with a transactional ``django_db`` mark for that database only.
ALIASES = [
    pytest.param(alias, marks=pytest.mark.django_db(transaction=True, databases=[alias]), id=alias)
    for alias in ("default", "postgresql")
]


def post_bounce(testapp: TestApp[Any], payload: dict[str, Any], status: int | str = 200) -> Any:
    """Post ``payload`` to the webhook with the right credentials; expect ``status`` ("*": any)."""
    return testapp.post_json(
        PATH, payload, headers=auth_headers("postmark", WEBHOOK_PASSWORD), status=status
    )


def log_in(testapp: TestApp[Any], username: str, password: str) -> Any:
    """Sign in through the login form; return the page the redirect lands on."""
    form = testapp.get("/login/").forms["login"]
    form["username"] = username
    form["password"] = password
    return form.submit(status=302).follow()


def warnings_in(page: Any) -> list[str]:
    """The texts of the warning messages a page shows."""
    return re.findall(r'<li class="warning">(.*?)</li>', page.text, re.S)


class PostgreSQLRouter:
    """Sends every read and write to the ``postgresql`` alias (see :func:`on_postgresql`)."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        return "postgresql"

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return "postgresql"

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return True


def on_alias(alias: str) -> override_settings:
    """Route the whole project (users, sessions, the adapter's tables) to ``alias``."""
    routers = [] if alias == "default" else [f"{__name__}.PostgreSQLRouter"]
    return override_settings(DATABASE_ROUTERS=routers)


def end_connection(alias: str) -> None:
    """Have the PostgreSQL server end the alias's connection (a restart, a failover)."""
    connection = connections[alias]
    connection.ensure_connection()
    assert connection.connection is not None
    pid = connection.connection.info.backend_pid
    with psycopg.connect(postgres.server().url("postgres"), autocommit=True) as admin:
        # The timeout (ms): wait until the backend is gone.
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
