"""bounce_middleware.testing: what users' own tests post, for every provider (issue 12).

Each provider's signed sample, built only from names re-exported by
``bounce_middleware.testing``, reaches the user's handler through a route
configured the way the module's docstring says; and no address that the
events carry reaches any log line, at any level.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from webtest import TestApp, TestRequest, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore
from bounce_middleware.providers import AmazonSES, Mailgun, Postmark, SendGrid
from bounce_middleware.testing import (
    SENDGRID_TEST_PUBLIC_KEY,
    TEST_SNS_TOPIC_ARN,
    auth_headers,
    mailgun_event,
    postmark_bounce,
    sendgrid_event,
    ses_bounce,
    sign_mailgun_request,
    sign_sendgrid_request,
    sign_ses_request,
    sns_test_fetcher,
)

PASSWORD = "tests-only-webhook-password"
MAILGUN_KEY = "key-tests-only-mailgun-signing"
ADDRESS = "zoë.unique-address@example.com"


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the site"]


def postmark() -> tuple[dict[str, str], bytes]:
    import json

    return auth_headers("postmark", PASSWORD), json.dumps(postmark_bounce(email=ADDRESS)).encode()


REQUESTS: dict[str, tuple[str, Callable[[], tuple[dict[str, str], bytes]]]] = {
    "postmark": ("/hooks/postmark", postmark),
    "sendgrid": (
        "/hooks/sendgrid",
        lambda: sign_sendgrid_request([sendgrid_event("hard", email=ADDRESS)]),
    ),
    "mailgun": (
        "/hooks/mailgun",
        lambda: sign_mailgun_request(mailgun_event("hard", email=ADDRESS), signing_key=MAILGUN_KEY),
    ),
    "amazon_ses": ("/hooks/ses", lambda: sign_ses_request(ses_bounce(email=ADDRESS))),
}


def post(app: TestApp, path: str, headers: dict[str, str], body: bytes) -> TestResponse:
    request = TestRequest.blank(path, method="POST", headers=headers, body=body)
    return app.do_request(request, status="*")


@pytest.fixture
def site() -> tuple[TestApp, list[Bounce]]:
    received: list[Bounce] = []
    middleware = BounceMiddleware(
        hello,
        routes={
            "/hooks/postmark": Postmark(credentials=[f"postmark:{PASSWORD}"]),
            "/hooks/sendgrid": SendGrid(public_key=SENDGRID_TEST_PUBLIC_KEY),
            "/hooks/mailgun": Mailgun(signing_key=MAILGUN_KEY),
            "/hooks/ses": AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=sns_test_fetcher),
        },
        handlers=[received.append],
        store=MemoryStore(),
    )
    return TestApp(middleware), received


@pytest.mark.parametrize("provider", sorted(REQUESTS))
def test_each_providers_signed_sample_reaches_the_handler(
    site: tuple[TestApp, list[Bounce]], provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, received = site
    path, build = REQUESTS[provider]
    headers, body = build()
    with caplog.at_level(logging.DEBUG):
        response = post(app, path, headers, body)
        again = post(app, path, headers, body)
    assert response.status_int == 200, response.text
    [bounce] = received
    assert (bounce.provider, bounce.email, bounce.kind.value) == (provider, ADDRESS, "hard")
    # The redelivery runs nothing: "already processed", or Mailgun's replayed token (401).
    assert len(received) == 1 and again.status_int in (200, 401)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged, "the library logs one line per webhook"
    assert "unique-address" not in logged and ADDRESS not in logged


def test_other_paths_pass_through(site: tuple[TestApp, list[Bounce]]) -> None:
    app, received = site
    assert app.get("/hooks").text == "the site"
    assert post(app, "/hooks/sendgrid/", {}, b"[]").text == "the site"  # paths compare exactly
    assert received == []


def test_a_sample_posted_to_another_providers_route_is_refused(
    site: tuple[TestApp, list[Bounce]],
) -> None:
    app, received = site
    for provider, (_, build) in REQUESTS.items():
        headers, body = build()
        for other, (path, _) in REQUESTS.items():
            if other != provider:
                assert post(app, path, headers, body).status_int == 401, (provider, other)
    assert received == []
