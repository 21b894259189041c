"""Property tests: whatever reaches the SES route, only documented errors and answers come out.

``authenticate`` may raise only Unauthorized (401) or TemporaryFailure (503);
``parse`` only PayloadError (400, kept) or TemporaryFailure; and through the
middleware no request gets a 5xx but the documented 503 (with Retry-After),
and a request not answered 200 runs no handler. Hypothesis feeds random
bytes, random JSON, SNS envelopes with random fields, and real samples,
correctly signed, whose SES notification has parts removed or replaced.

The example count is ``BOUNCE_HYPOTHESIS_EXAMPLES`` (default 40), as in
``tests/test_properties.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp, TestRequest

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore
from bounce_middleware.errors import PayloadError, TemporaryFailure, Unauthorized
from bounce_middleware.providers import Parsed
from bounce_middleware.providers.amazon_ses import AmazonSES
from bounce_middleware.request import post
from bounce_middleware.samples.amazon_ses import (
    SES_KINDS,
    TEST_SNS_CERT_URL,
    VALIDATION_MESSAGE,
    SNSTestFetcher,
    ses_bounce,
    ses_complaint,
    ses_event,
    sign_envelope,
    sns_notification,
    sns_subscription_confirmation,
)

from .test_provider_ses import PATH, TOPIC

PROFILE = settings(
    max_examples=int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,  # example times vary with the machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ANSWERS = {200, 400, 401, 503}

# Any code point, lone surrogates included: json.loads turns "\ud800" into one.
ANY_CHARACTER = st.characters(exclude_categories=()) | st.characters(
    min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()
)
FIELD_NAMES = [
    "Type",
    "Message",
    "MessageId",
    "TopicArn",
    "Timestamp",
    "Signature",
    "SignatureVersion",
    "SigningCertURL",
    "SubscribeURL",
    "eventType",
    "notificationType",
    "bounce",
    "bouncedRecipients",
    "emailAddress",
    "mail",
    "tags",
    "destination",
]
texts = st.text(ANY_CHARACTER, max_size=40) | st.sampled_from(
    [
        TOPIC,
        TEST_SNS_CERT_URL,
        "Notification",
        "SubscriptionConfirmation",
        "1",
        "2",
        "Bounce",
        "Permanent",
        "2018-10-08T14:05:45 +0000",
        "9999-12-31T23:59:59-14:00",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
    ]
)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | texts, inner, max_size=4)
    ),
    max_leaves=10,
)

HEADERS = [
    "x-amz-sns-message-type",
    "x-amz-sns-message-id",
    "x-amz-sns-topic-arn",
    "x-amz-sns-rawdelivery",
    "authorization",
]

BASES: list[Any] = [factory(email="ann@example.com") for factory in SES_KINDS.values()] + [
    ses_bounce(recipients=[{"emailAddress": "a@example.com"}, {"emailAddress": "b@example.com"}]),
    ses_complaint("not-spam"),
    ses_event("Rendering Failure"),
    ses_event("Open"),
    {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "set up"},
]


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with some keys dropped, some values replaced by random JSON."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            choice = draw(st.integers(0, 11))
            if choice == 0:
                continue
            out[key] = draw(json_values) if choice == 1 else draw(mutated(item))
        return out
    if isinstance(value, list):
        items = [draw(mutated(item)) for item in value if draw(st.integers(0, 7))]
        if draw(st.integers(0, 7)) == 0:
            items.append(draw(json_values))
        return items
    return draw(json_values) if draw(st.integers(0, 9)) == 0 else value


ses_messages = st.sampled_from(BASES).flatmap(mutated) | json_values | texts


@st.composite
def signed_notifications(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """A correctly signed SNS notification from the configured topic, around random SES data."""
    message = draw(ses_messages)
    # A text with a lone surrogate cannot be signed (nor sent by AWS): send it escaped.
    text = message if isinstance(message, str) and message.isprintable() else json.dumps(message)
    version = draw(st.sampled_from([1, 2]))
    return sign_envelope(sns_notification(text, version=version))


@st.composite
def forged_envelopes(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """A signed envelope with random fields replaced after signing, or an unsigned random one."""
    headers, body = draw(signed_notifications())
    envelope = draw(mutated(json.loads(body)))
    raw = json.dumps(envelope).encode()
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]  # cut short
    return (headers if draw(st.booleans()) else {}), raw


any_request: st.SearchStrategy[tuple[dict[str, str], bytes]] = (
    signed_notifications()
    | forged_envelopes()
    | st.tuples(st.just({}), st.binary(max_size=300))
    | st.tuples(st.just({}), json_values.map(lambda v: json.dumps(v).encode()))
)


def provider() -> AmazonSES:
    return AmazonSES(topic_arns=[TOPIC], fetch=SNSTestFetcher())


@PROFILE
@given(body=st.binary(max_size=300), headers=st.dictionaries(st.sampled_from(HEADERS), texts))
def test_authenticate_raises_only_unauthorized_for_any_bytes(
    body: bytes, headers: dict[str, str]
) -> None:
    try:
        provider().authenticate(post(PATH, body, headers))
    except Unauthorized as error:
        assert error.reason and "\n" not in error.reason


@PROFILE
@given(request=any_request)
def test_authenticate_raises_only_documented_errors(request: tuple[dict[str, str], bytes]) -> None:
    headers, body = request
    try:
        provider().authenticate(post(PATH, body, headers))
    except (Unauthorized, TemporaryFailure) as error:
        assert error.reason and "\n" not in error.reason


@PROFILE
@given(request=any_request)
def test_parse_raises_only_documented_errors(request: tuple[dict[str, str], bytes]) -> None:
    """``parse`` alone, as ``replay`` calls it on a stored body."""
    headers, body = request
    try:
        parsed = provider().parse(post(PATH, body, headers))
    except (PayloadError, TemporaryFailure) as error:
        assert error.reason and "\n" not in error.reason
        return
    check_events(parsed)


@PROFILE
@given(request=signed_notifications())
def test_signed_notifications_parse_to_events_or_a_reason(
    request: tuple[dict[str, str], bytes],
) -> None:
    ses = provider()
    webhook = post(PATH, request[1], request[0])
    ses.authenticate(webhook)
    try:
        parsed = ses.parse(webhook)
    except PayloadError as error:
        assert error.reason and "\n" not in error.reason
        return
    check_events(parsed)


def check_events(parsed: Parsed) -> None:
    for event in parsed.events:
        assert isinstance(event.email, str) and event.email
        assert event.bounced_at is None or event.bounced_at.utcoffset() is not None
        assert len(event.key) < 300
        assert all(type(v) is str for v in event.metadata.values())


@PROFILE
@given(request=any_request | signed_notifications())
def test_the_middleware_never_answers_an_undocumented_5xx(
    request: tuple[dict[str, str], bytes],
) -> None:
    seen: list[Bounce] = []
    app = TestApp(
        BounceMiddleware(
            _downstream, routes={PATH: provider()}, handlers=[seen.append], store=MemoryStore()
        )
    )
    headers, body = request
    response = app.do_request(
        TestRequest.blank(PATH, method="POST", headers=headers, body=body), status="*"
    )
    assert response.status_int in ANSWERS, response.text
    if response.status_int == 503:
        # Only the certificate fetch fails here (a URL the test fetcher does not serve).
        assert response.headers["Retry-After"]
    if response.status_int != 200:
        assert seen == []


def test_the_fuzzed_bases_are_accepted_as_they_are() -> None:
    """The unmutated samples pass, so the properties above start from valid requests."""
    for base in [*BASES, VALIDATION_MESSAGE]:
        text = base if isinstance(base, str) else json.dumps(base)
        ses = provider()
        headers, body = sign_envelope(sns_notification(text))
        request = post(PATH, body, headers)
        ses.authenticate(request)
        ses.parse(request)
    confirmation = sign_envelope(sns_subscription_confirmation())
    ses = provider()
    request = post(PATH, confirmation[1], confirmation[0])
    ses.authenticate(request)
    assert ses.parse(request).handshake


def _downstream(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]
