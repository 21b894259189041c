"""The admin pages, through Django's real admin and WSGI stack, with what webhooks stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from webtest import TestApp

from bounce_middleware.adapters.django.admin import PRETTY_DEPTH, nesting_depth
from bounce_middleware.adapters.django.models import BounceEvent, RejectedRequest
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.django_app.support import PATH, post_bounce
from tests.django_settings import WEBHOOK_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = "/admin/bounce_middleware/bounceevent/"
REJECTED = "/admin/bounce_middleware/rejectedrequest/"


@pytest.fixture
def admin_app() -> Iterator[TestApp[Any]]:
    """The project's WSGI application (bounce endpoint included), signed in as a superuser."""
    testapp: TestApp[Any] = TestApp(get_wsgi_application())
    get_user_model().objects.create_superuser("boss", "boss@example.com", "boss-pw")
    form = testapp.get("/admin/login/").forms["login-form"]
    form["username"], form["password"] = "boss", "boss-pw"
    form.submit(status=302)
    yield testapp


def test_admin_lists_filters_and_shows_bounces(admin_app: TestApp) -> None:
    get_user_model().objects.create_user("ann", contact_email="Ann@Example.com")
    post_bounce(admin_app, postmark_bounce(email="ann@example.com"))
    post_bounce(admin_app, postmark_bounce("SoftBounce", email="bob@example.com"))
    assert "bob@example.com" in admin_app.get(EVENTS).text
    hard = admin_app.get(EVENTS, {"kind__exact": "hard"}).text
    assert "ann@example.com" in hard
    assert "bob@example.com" not in hard
    found = admin_app.get(EVENTS, {"q": "BOB@"}).text
    assert "bob@example.com" in found
    assert "ann@example.com" not in found

    event = BounceEvent.objects.get(email="ann@example.com")
    detail = admin_app.get(f"{EVENTS}{event.pk}/change/").text
    assert "&quot;Type&quot;: &quot;HardBounce&quot;" in detail
    assert "<textarea" not in detail  # read-only
    admin_app.get(f"{EVENTS}add/", status=403)
    assert "ann@example.com" in admin_app.get("/admin/bounce_middleware/bouncenotice/").text


def deep_body(depth: int) -> bytes:
    """A Postmark bounce with an extra field of objects nested ``depth`` deep."""
    payload = json.dumps(postmark_bounce(email="deep@example.com"))
    return (payload[:-1] + ', "Deep": ' + '{"a": ' * depth + "1" + "}" * depth + "}").encode()


def test_change_pages_survive_every_body_the_middleware_accepted(admin_app: TestApp) -> None:
    # Version 1's change page raised RecursionError on an event nested ~960 deep.
    headers = {**auth_headers("postmark", WEBHOOK_PASSWORD), "Content-Type": "application/json"}
    accepted = [
        depth
        for depth in (5000, 990, 960, 900, 480)
        if admin_app.post(
            PATH, deep_body(depth).decode(), headers=headers, expect_errors=True
        ).status_int
        == 200
    ]
    assert accepted and max(accepted) >= 900  # the parser's own limit, not the admin's
    for event in BounceEvent.objects.all():
        page = admin_app.get(f"{EVENTS}{event.pk}/change/")
        assert "{&quot;a&quot;: {&quot;a&quot;: " in page.text  # shown as received
    assert admin_app.get(EVENTS).status_int == 200


def test_rejected_requests_are_listed_and_shown(admin_app: TestApp) -> None:
    headers = auth_headers("postmark", WEBHOOK_PASSWORD)
    for body in (b'{"Type": "HardBounce"}', b"\xff not UTF-8 <script>"):
        admin_app.request(PATH, method="POST", body=body, headers=headers, status=400)
    rows = list(RejectedRequest.objects.order_by("id"))
    assert [r.resolved for r in rows] == [False, False]
    listing = admin_app.get(REJECTED).text
    for row in rows:
        assert row.reason in listing
        page = admin_app.get(f"{REJECTED}{row.pk}/change/").text
        assert row.key in page
    assert "&quot;Type&quot;: &quot;HardBounce&quot;" in admin_app.get(
        f"{REJECTED}{rows[0].pk}/change/"
    )
    assert "\ufffd not UTF-8 &lt;script&gt;" in admin_app.get(f"{REJECTED}{rows[1].pk}/change/")
    admin_app.get(f"{REJECTED}add/", status=403)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "[[[{{{", "b": "\\"[["}', 1),  # brackets inside strings do not count
        ("not json ]]]", 0),
        ("[" * 10_000, 10_000),
    ],
)
def test_nesting_depth_counts_without_recursion(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_shallow_bodies_are_pretty_printed(admin_app: TestApp) -> None:
    post_bounce(admin_app, postmark_bounce(email="ann@example.com", Metadata={"a": "b"}))
    page = admin_app.get(f"{EVENTS}{BounceEvent.objects.get().pk}/change/").text
    assert "\n  &quot;Metadata&quot;: {\n    &quot;a&quot;: &quot;b&quot;\n  }" in page
    assert PRETTY_DEPTH >= 2


def test_change_pages_show_a_lone_surrogate_escape_as_sent(admin_app: TestApp) -> None:
    # json.loads turns "\ud800" into a lone surrogate, which a UTF-8 page cannot hold.
    body = (
        b'{"RecordType": "Bounce", "ID": 1, "Email": "\\ud800@example.com", "Type": "HardBounce"}'
    )
    headers = {**auth_headers("postmark", WEBHOOK_PASSWORD), "Content-Type": "application/json"}
    admin_app.request(PATH, method="POST", body=body, headers=headers, status=400)  # kept
    rejected = RejectedRequest.objects.get()
    page = admin_app.get(f"{REJECTED}{rejected.pk}/change/")
    assert "&quot;Email&quot;: &quot;\\ud800@example.com&quot;" in page.text
    # An event whose body holds one (as a version that accepted it may have stored it).
    event = BounceEvent.objects.create(
        key="postmark:1", provider="postmark", email="x@example.com", kind="hard",
        type="HardBounce", body=body.replace(b'"Email": "', b'"Name": "\\udfff", "Email": "'),
    )  # fmt: skip
    page = admin_app.get(f"{EVENTS}{event.pk}/change/")
    assert "&quot;Name&quot;: &quot;\\udfff&quot;" in page.text
    assert "&quot;Email&quot;: &quot;\\ud800@example.com&quot;" in page.text
