"""The Pyramid notice when the database fails: the page works, nothing private is logged."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa
from webtest import TestApp

from bounce_middleware import BounceMiddleware
from bounce_middleware.testing import postmark_bounce
from tests.test_pyramid import db as db  # noqa: F401
from tests.test_pyramid import engine as engine  # noqa: F401 - fixtures
from tests.test_pyramid import middleware as middleware  # noqa: F401
from tests.test_pyramid import notices, post_bounce
from tests.test_pyramid import testapp as testapp  # noqa: F401

# Each makes marking the notice shown fail: at the UPDATE, or only at COMMIT.
FAILURES = {
    "statement": [
        "CREATE TRIGGER boom BEFORE UPDATE ON bounce_notices "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    ],
    "commit": [
        # A deferred foreign key is checked by COMMIT itself, after every statement.
        "CREATE TABLE target (id INTEGER PRIMARY KEY)",
        "CREATE TABLE guard (x INTEGER REFERENCES target (id) DEFERRABLE INITIALLY DEFERRED)",
        "CREATE TRIGGER boom AFTER UPDATE ON bounce_notices "
        "BEGIN INSERT INTO guard VALUES (42); END",
    ],
}


def enforce_foreign_keys(engine: sa.Engine) -> None:
    """``PRAGMA foreign_keys = ON`` on every new connection of ``engine`` (from now on)."""
    engine.dispose()

    @sa.event.listens_for(engine, "connect")
    def on(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys = ON")


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_notice_logs_no_address_and_stays_pending(
    failure: str,
    middleware: BounceMiddleware,  # noqa: F811
    testapp: TestApp[Any],  # noqa: F811
    engine: sa.Engine,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    app_engine: sa.Engine = middleware.app.registry["dbsession_factory"].kw["bind"]  # type: ignore[attr-defined]
    enforce_foreign_keys(app_engine)
    with engine.begin() as connection:
        for statement in FAILURES[failure]:
            connection.exec_driver_sql(statement)
    testapp.get("/login/1")
    with caplog.at_level(logging.DEBUG):
        assert testapp.get("/").text == "-"  # the page works, without the notice
    assert "bounce notice: IntegrityError" in caplog.text
    assert "ann@example.com" not in caplog.text
    assert "[parameters:" not in caplog.text
    assert notices(engine) == [("1", "ann@example.com", False)]  # still pending

    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER boom")
    assert testapp.get("/").text.startswith("We could not deliver e-mail to ann@example.com")
    assert notices(engine) == [("1", "ann@example.com", True)]


def test_a_failing_commit_of_the_user_handler_logs_nothing_private(
    middleware: BounceMiddleware,  # noqa: F811
    testapp: TestApp[Any],  # noqa: F811
    engine: sa.Engine,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    app_engine: sa.Engine = middleware.app.registry["dbsession_factory"].kw["bind"]  # type: ignore[attr-defined]
    enforce_foreign_keys(app_engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(FAILURES["commit"][0])
        connection.exec_driver_sql(FAILURES["commit"][1])
        connection.exec_driver_sql(
            "CREATE TRIGGER boom AFTER INSERT ON bounce_notices "
            "BEGIN INSERT INTO guard VALUES (42); END"
        )
    payload = postmark_bounce(email="ann@example.com", Description="CONFIDENTIAL-DESCRIPTION")
    with caplog.at_level(logging.DEBUG):
        post_bounce(testapp, payload, status=500)  # a handler failure: retried
    assert "bounce user handler: IntegrityError (FOREIGN KEY constraint failed)" in caplog.text
    assert "ann@example.com" not in caplog.text and "CONFIDENTIAL" not in caplog.text
    assert notices(engine) == []
    # The failed commit left no connection holding SQLite's write lock.
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER boom")
    post_bounce(testapp, payload)
    assert notices(engine) == [("1", "ann@example.com", False)]
