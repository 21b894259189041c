"""The Django adapter over HTTP: bounce in, notice out, through Django's real WSGI stack.

The settings (``tests.django_settings``) use a custom user model whose
``EMAIL_FIELD`` is ``contact_email``. The middleware runs outside Django's
request transaction, so these tests use ``transactional_db``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from webtest import TestApp

from bounce_middleware.adapters.django.handlers import NAME as NOTIFY
from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.auth_cases import AUTH_CASES, AuthCase, assert_auth_case
from tests.django_app.support import PATH, log_in, post_bounce, warnings_in
from tests.django_settings import WEBHOOK_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS: dict[str, Any] = {
    "PATH": PATH,
    "CREDENTIALS": [f"postmark:{WEBHOOK_PASSWORD}"],
    "NOTIFY_KINDS": ["hard", "suppressed"],
    "ACCOUNT_URL": "account",
}
HARD_DESCRIPTION = (
    "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
)


@pytest.fixture
def testapp() -> TestApp:
    """Django's WSGI application wrapped as the README's ``wsgi.py`` does it."""
    return TestApp(get_wsgi_application())


@pytest.fixture
def ann() -> Any:
    """A user whose address (``contact_email``) is Ann@Example.com; ``email`` is another one."""
    return get_user_model().objects.create_user(
        username="ann",
        password="ann-pw",
        contact_email="Ann@Example.com",
        email="ann-unrelated@example.org",
    )


def test_whole_flow(testapp: TestApp, ann: Any) -> None:
    payload = postmark_bounce(email="ann@example.com")
    answer = post_bounce(testapp, payload)
    assert answer.content_type == "text/plain"
    assert answer.text == "accepted\n"

    event = BounceEvent.objects.get()
    assert event.key == f"postmark:{payload['ID']}"
    assert (event.email, event.kind, event.type) == ("ann@example.com", "hard", "HardBounce")
    assert event.finished
    assert event.completed_handlers == {NOTIFY}
    assert event.lease_token == ""
    notice = BounceNotice.objects.get()
    assert (notice.user_id, notice.email, notice.shown_at) == (ann.pk, "ann@example.com", None)

    page = log_in(testapp, "ann", "ann-pw")
    [warning] = warnings_in(page)
    assert "ann@example.com" in warning
    assert HARD_DESCRIPTION in warning
    assert '<a href="/account/">' in warning
    notice.refresh_from_db()
    assert notice.shown_at is not None

    assert warnings_in(testapp.get("/")) == []
    assert warnings_in(testapp.get("/account/")) == []


def test_description_is_escaped(testapp: TestApp, ann: Any) -> None:
    post_bounce(
        testapp,
        postmark_bounce(email="ann@example.com", Description='<script>alert("x")</script>'),
    )
    [warning] = warnings_in(log_in(testapp, "ann", "ann-pw"))
    assert "<script>" not in warning
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in warning


@override_settings(
    BOUNCE_MIDDLEWARE={
        **SETTINGS,
        "NOTICE_MESSAGE": 'Bounced: {email}! {description} <a href="{account_url}">Fix</a>',
        "ACCOUNT_URL": "/settings/email/",
    }
)
def test_notice_wording_and_link_are_configurable(ann: Any) -> None:
    testapp = TestApp(get_wsgi_application())
    post_bounce(testapp, postmark_bounce(email="ann@example.com", Description="Gone & away."))
    [warning] = warnings_in(log_in(testapp, "ann", "ann-pw"))
    assert (
        warning == 'Bounced: ann@example.com! Gone &amp; away. <a href="/settings/email/">Fix</a>'
    )


@override_settings(BOUNCE_MIDDLEWARE={**SETTINGS, "ACCOUNT_URL": None})
def test_notice_without_account_url_has_no_link(ann: Any) -> None:
    testapp = TestApp(get_wsgi_application())
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    [warning] = warnings_in(log_in(testapp, "ann", "ann-pw"))
    assert "<a " not in warning
    assert "check your e-mail address" in warning


@override_settings(BOUNCE_MIDDLEWARE={**SETTINGS, "NOTICE_CATEGORY": "error"})
def test_notice_category_sets_the_message_level(ann: Any) -> None:
    testapp = TestApp(get_wsgi_application())
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    page = log_in(testapp, "ann", "ann-pw")
    assert warnings_in(page) == []
    [error] = re.findall(r'<li class="error">(.*?)</li>', page.text, re.S)
    assert "ann@example.com" in error


def test_notice_is_shown_on_get_only(testapp: TestApp, ann: Any) -> None:
    log_in(testapp, "ann", "ann-pw")
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    # A HEAD response has no body: showing the notice there would lose it.
    testapp.head("/")
    assert BounceNotice.objects.get().shown_at is None
    [warning] = warnings_in(testapp.get("/"))
    assert "ann@example.com" in warning
    assert BounceNotice.objects.get().shown_at is not None


def test_no_notice_after_changing_address(testapp: TestApp, ann: Any) -> None:
    log_in(testapp, "ann", "ann-pw")
    form = testapp.get("/account/").forms["address"]  # the page is open...
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))  # ...when the bounce comes
    form["email"] = "ann@new.example.com"
    page = form.submit(status=302).follow()
    assert warnings_in(page) == []
    assert "Your address was updated." in page.text
    assert warnings_in(testapp.get("/")) == []
    assert BounceNotice.objects.get().shown_at is None


def test_no_notice_for_a_user_who_changed_address_before_logging_in(
    testapp: TestApp, ann: Any
) -> None:
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    ann.contact_email = "ann@fixed.example.com"
    ann.save()
    assert warnings_in(log_in(testapp, "ann", "ann-pw")) == []


def test_users_are_found_by_email_field_not_email(testapp: TestApp, ann: Any) -> None:
    post_bounce(testapp, postmark_bounce(email="ann-unrelated@example.org"))
    assert BounceEvent.objects.get().finished
    assert not BounceNotice.objects.exists()


def test_unknown_address_is_recorded_and_ignored(testapp: TestApp, ann: Any) -> None:
    post_bounce(testapp, postmark_bounce(email="nobody@example.com"))
    assert BounceEvent.objects.get().finished
    assert not BounceNotice.objects.exists()
    assert warnings_in(log_in(testapp, "ann", "ann-pw")) == []


def test_every_user_with_the_address_gets_one_notice(testapp: TestApp, ann: Any) -> None:
    other = get_user_model().objects.create_user(
        username="ann2", password="pw", contact_email="ANN@example.COM"
    )
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    assert set(BounceNotice.objects.values_list("user_id", flat=True)) == {ann.pk, other.pk}


def test_kinds_outside_notify_kinds_leave_no_notice(testapp: TestApp, ann: Any) -> None:
    post_bounce(testapp, postmark_bounce("SoftBounce", email="ann@example.com"))
    event = BounceEvent.objects.get()
    assert (event.kind, event.finished) == ("soft", True)
    assert not BounceNotice.objects.exists()


def test_duplicate_delivery_runs_nothing_twice(testapp: TestApp, ann: Any) -> None:
    payload = postmark_bounce(email="ann@example.com")
    post_bounce(testapp, payload)
    answer = post_bounce(testapp, payload)
    assert answer.text == "already processed\n"
    assert BounceNotice.objects.count() == 1
    assert BounceEvent.objects.get().attempts == 1


def test_new_bounce_costs_few_queries(testapp: TestApp, ann: Any) -> None:
    payload = postmark_bounce(email="ann@example.com")
    with CaptureQueriesContext(connection) as queries:
        post_bounce(testapp, payload)
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements == [
        "INSERT",  # claim
        "BEGIN",  # the handler's transaction: ...
        "SELECT",  # ... the users with the address
        "INSERT",  # ... their notices, in one statement
        "UPDATE",  # ... and the handler's completion, which also ends the claim
        "COMMIT",
    ]


def test_connection_is_closed_after_a_delivery(testapp: TestApp) -> None:
    # CONN_MAX_AGE = 0, as in Django's own request cycle: nothing stays open.
    post_bounce(testapp, postmark_bounce())
    assert connection.connection is None


def test_other_paths_reach_django(testapp: TestApp) -> None:
    assert "Not signed in" in testapp.get("/").text
    testapp.get("/postmark/bounce/", status=404)


def test_get_on_the_bounce_path_is_405(testapp: TestApp) -> None:
    answer = testapp.get(PATH, headers=auth_headers("postmark", WEBHOOK_PASSWORD), status=405)
    assert answer.headers["Allow"] == "POST"


def test_malformed_body_is_400(testapp: TestApp) -> None:
    headers = auth_headers("postmark", WEBHOOK_PASSWORD)
    answer = testapp.post(PATH, "{not json", headers=headers, status=400)
    assert answer.text == "body is not valid JSON\n"
    assert not BounceEvent.objects.exists()


@pytest.mark.parametrize("case", AUTH_CASES, ids=str)
def test_auth(case: AuthCase, testapp: TestApp) -> None:
    assert_auth_case(testapp, PATH, case, "postmark", WEBHOOK_PASSWORD)


def test_notice_check_costs_one_query_for_a_user_without_notices(
    testapp: TestApp, ann: Any
) -> None:
    log_in(testapp, "ann", "ann-pw")
    with CaptureQueriesContext(connection) as queries:
        testapp.get("/")
    notice_queries = [q for q in queries.captured_queries if "bouncenotice" in q["sql"]]
    assert len(notice_queries) == 1
