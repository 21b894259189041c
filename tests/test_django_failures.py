"""The Django adapter when things fail: handlers, the database, the connection, retries.

Through Django's real WSGI stack, on SQLite and on the real PostgreSQL server.
Nothing an event carries (the address, the provider's description) may reach
the logs on the way, whatever the database's error message quotes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import override_settings
from webtest import TestApp

from bounce_middleware.adapters.django.db import connection_scope
from bounce_middleware.adapters.django.handlers import NAME as NOTIFY
from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.testing import postmark_bounce
from tests.django_app import handlers as test_handlers
from tests.django_app.support import PATH, end_connection, on_alias, post_bounce
from tests.django_settings import BOUNCE_MIDDLEWARE, WEBHOOK_PASSWORD

ADDRESS = "victim.secret@example.com"  # "victim" must not reach the logs
DESCRIPTION = "Private diagnostic text"
NOTICES = BounceNotice._meta.db_table


@pytest.fixture
def testapp() -> TestApp:
    """Django's WSGI application wrapped as the README's ``wsgi.py`` does it."""
    return TestApp(get_wsgi_application())


@pytest.fixture
def ann() -> Any:
    """A user whose address (``contact_email``) is Ann@Example.com."""
    return get_user_model().objects.create_user(username="ann", contact_email="Ann@Example.com")


@pytest.mark.django_db(transaction=True)
def test_handler_failure_answers_500_and_the_retry_completes(testapp: TestApp, ann: Any) -> None:
    payload = postmark_bounce(email="ann@example.com")
    with connection.cursor() as cursor:
        # A real database failure inside the handler's transaction.
        cursor.execute(
            f"CREATE TRIGGER fail_notices BEFORE INSERT ON {NOTICES} "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    post_bounce(testapp, payload, status=500)
    event = BounceEvent.objects.get()
    assert (event.finished, event.completed, event.lease_token) == (False, "", "")
    assert not BounceNotice.objects.exists()

    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER fail_notices")
    assert post_bounce(testapp, payload).text == "accepted\n"
    event.refresh_from_db()
    assert (event.finished, event.completed_handlers, event.attempts) == (
        True,
        frozenset({NOTIFY}),
        2,
    )
    assert BounceNotice.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@override_settings(
    BOUNCE_MIDDLEWARE={**BOUNCE_MIDDLEWARE, "HANDLERS": [NOTIFY, "tests.django_app.handlers.flaky"]}
)
def test_retry_runs_only_the_handlers_that_failed(ann: Any) -> None:
    testapp = TestApp(get_wsgi_application())
    payload = postmark_bounce(email="ann@example.com")
    test_handlers.failures_left = 1
    test_handlers.calls.clear()
    post_bounce(testapp, payload, status=500)
    assert BounceEvent.objects.get().completed_handlers == {NOTIFY}
    # Were notify_users run again, it would put this notice back.
    BounceNotice.objects.all().delete()

    post_bounce(testapp, payload)
    assert test_handlers.calls == [f"postmark:{payload['ID']}"]
    assert not BounceNotice.objects.exists()
    event = BounceEvent.objects.get()
    assert event.finished
    assert event.completed_handlers == {NOTIFY, "tests.django_app.handlers.flaky"}


@pytest.mark.django_db(transaction=True)
def test_delivery_while_another_holds_the_event_answers_503(testapp: TestApp) -> None:
    payload = postmark_bounce()
    store = DjangoStore()
    body = b'{"ID": %d}' % payload["ID"]
    bounce = Bounce(
        provider="postmark", id=str(payload["ID"]), email="x@example.com", kind=BounceKind.HARD,
        type="HardBounce", body=body,
    )  # fmt: skip
    store.claim(bounce, lease_seconds=300)  # another process, mid-delivery
    answer = post_bounce(testapp, payload, status=503)
    assert answer.headers["Retry-After"] == "60"


#: How the database refuses the handler's notices: (setup statements, undo statements).
REFUSALS = {
    # PostgreSQL quotes what the trigger says, and its DETAIL, in the error's message.
    "postgresql-trigger": (
        [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused for %', NEW.email "
            "USING DETAIL = 'row: ' || NEW.email || ' ' || NEW.description; END $$",
            f"CREATE TRIGGER refuse BEFORE INSERT ON {NOTICES} "
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        ],
        [f"DROP TRIGGER refuse ON {NOTICES}", "DROP FUNCTION refuse()"],
    ),
    # "DETAIL: Failing row contains (..., victim.secret@example.com, ...)"
    "postgresql-not-null": (
        [f"ALTER TABLE {NOTICES} ADD COLUMN newer text NOT NULL"],
        [f"ALTER TABLE {NOTICES} DROP COLUMN newer"],
    ),
    "default-trigger": (
        [
            f"CREATE TRIGGER refuse BEFORE INSERT ON {NOTICES} "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        ],
        ["DROP TRIGGER refuse"],
    ),
}


@contextmanager
def notices_refused(alias: str, refusal: str) -> Iterator[None]:
    setup, undo = REFUSALS[refusal]
    with connections[alias].cursor() as cursor:
        for sql in setup:
            cursor.execute(sql)
    try:
        yield
    finally:
        with connections[alias].cursor() as cursor:
            for sql in undo:
                cursor.execute(sql)


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(
            name,
            marks=pytest.mark.django_db(transaction=True, databases=[name.split("-")[0]]),
            id=name,
        )
        for name in REFUSALS
    ],
)
def test_a_database_error_in_the_user_handler_logs_no_address_or_content(
    refusal: str, testapp: TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    alias = refusal.split("-")[0]
    caplog.set_level(logging.DEBUG)
    with on_alias(alias):
        get_user_model().objects.db_manager(alias).create_user("v", contact_email=ADDRESS)
        with notices_refused(alias, refusal):
            post_bounce(
                testapp, postmark_bounce(email=ADDRESS, Description=DESCRIPTION), status=500
            )
        assert not BounceEvent.objects.using(alias).get().finished
    assert f"handler {NOTIFY} failed" in caplog.text
    assert "victim" not in caplog.text
    assert DESCRIPTION not in caplog.text
    assert "Failing row" not in caplog.text
    assert "refused for" not in caplog.text
    assert "StoreUnavailable: bounce user handler: " in caplog.text  # the error's class


@pytest.mark.django_db(transaction=True, databases=["postgresql"])
def test_a_connection_ended_during_a_handler_is_replaced_to_record_its_completion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def slow_http_call(bounce: Bounce) -> None:
        # An ordinary handler; meanwhile the server ends the idle connection (a restart).
        calls.append(bounce.key)
        end_connection("postgresql")

    middleware = BounceMiddleware(
        lambda environ, start_response: [],
        path=PATH,
        credentials=[f"postmark:{WEBHOOK_PASSWORD}"],
        store=DjangoStore(using="postgresql"),
        scope=connection_scope,
    )
    middleware.add_handler(slow_http_call, name="tests.slow_http_call")
    app = TestApp(middleware)
    payload = postmark_bounce()
    caplog.set_level(logging.WARNING)
    # The completion's first write fails on the ended connection; its retry reconnects.
    assert post_bounce(app, payload).text == "accepted\n"
    assert "could not record handler tests.slow_http_call" in caplog.text
    assert post_bounce(app, payload).text == "already processed\n"
    assert calls == [f"postmark:{payload['ID']}"]
