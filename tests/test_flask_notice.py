"""The Flask notice when the database fails: the page works, nothing private is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware.testing import postmark_bounce
from tests.test_flask import create_app, db, log_in, notices, post_bounce
from tests.test_pyramid_notice import FAILURES, enforce_foreign_keys


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_notice_logs_no_address_and_stays_pending(
    failure: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(tmp_path / "app.sqlite3")
    testapp = TestApp(app)
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    with app.app_context():
        engine = db.engine
    enforce_foreign_keys(engine)
    with engine.begin() as connection:
        for statement in FAILURES[failure]:
            connection.exec_driver_sql(statement)
    with caplog.at_level(logging.DEBUG):
        assert log_in(testapp, "ann@example.com") == "-"  # the page works, without the notice
    assert "bounce notice: IntegrityError" in caplog.text
    assert "ann@example.com" not in caplog.text
    assert "[parameters:" not in caplog.text
    assert [n.shown_at for n in notices(app)] == [None]  # still pending

    with engine.begin() as connection:  # the failed commit left the database writable
        connection.exec_driver_sql("DROP TRIGGER boom")
    assert testapp.get("/").text.startswith("[warning] We could not deliver e-mail to ann@")
    assert [n.shown_at is not None for n in notices(app)] == [True]
