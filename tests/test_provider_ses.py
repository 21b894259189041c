"""Amazon SES (SNS) notifications into Bounce objects: the mapping table, fields, refusals.

Everything here calls the provider directly, with the TEST certificate served by
an injected fetcher (never the network). Authentication is in
``test_provider_ses_auth.py``, construction and subscription handshakes in
``..._setup.py``, the middleware in ``..._http.py``, fuzzing in ``..._fuzz.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from bounce_middleware import BounceKind, PayloadError
from bounce_middleware.providers import Parsed
from bounce_middleware.providers.amazon_ses import AmazonSES
from bounce_middleware.request import WebhookRequest, post
from bounce_middleware.samples.amazon_ses import (
    TEST_SNS_TOPIC_ARN,
    VALIDATION_MESSAGE,
    SNSTestFetcher,
    ses_bounce,
    ses_complaint,
    ses_delivery_delay,
    ses_event,
    sign_envelope,
    sign_request,
    sns_notification,
)

PATH = "/hooks/ses"
TOPIC = TEST_SNS_TOPIC_ARN
OTHER_TOPIC = "arn:aws:sns:eu-west-1:999999999999:someone-elses"


def make(fetcher: SNSTestFetcher | None = None, **options: Any) -> AmazonSES:
    return AmazonSES(topic_arns=[TOPIC], fetch=fetcher or SNSTestFetcher(), **options)


def signed(message: Any, **options: Any) -> WebhookRequest:
    headers, body = sign_request(message, **options)
    return post(PATH, body, headers)


def envelope_request(envelope: dict[str, Any]) -> WebhookRequest:
    headers, body = sign_envelope(envelope)
    return post(PATH, body, headers)


def receive(message: Any, provider: AmazonSES | None = None, **options: Any) -> Parsed:
    """Authenticate and parse ``message`` as the receiver does."""
    provider = provider or make()
    request = signed(message, **options)
    provider.authenticate(request)
    return provider.parse(request)


def kinds(parsed: Parsed) -> list[str]:
    return [event.kind.value for event in parsed.events]


# providers.md, "Amazon SES through SNS", Events -> kinds, written out independently of
# the module's own tables: (notification, kind).
MAPPING: list[tuple[dict[str, Any], str]] = [
    (ses_bounce("Permanent", "General"), "hard"),
    (ses_bounce("Permanent", "NoEmail"), "hard"),
    (ses_bounce("Permanent", "Suppressed"), "suppressed"),
    (ses_bounce("Permanent", "OnAccountSuppressionList"), "suppressed"),
    (ses_bounce("Transient", "General"), "soft"),
    (ses_bounce("Transient", "MailboxFull"), "soft"),
    (ses_bounce("Transient", "MessageTooLarge"), "soft"),
    (ses_bounce("Transient", "ContentRejected"), "blocked"),
    (ses_bounce("Transient", "AttachmentRejected"), "blocked"),
    (ses_bounce("Undetermined", "Undetermined"), "unknown"),
    # Subtypes SES may add later keep their bounce type's meaning.
    (ses_bounce("Permanent", "SomethingNew"), "hard"),
    (ses_bounce("Transient", "SomethingNew"), "soft"),
    (ses_bounce("Sideways", "General"), "unknown"),
    (ses_complaint("abuse"), "complaint"),
    (ses_complaint("fraud"), "complaint"),
    (ses_complaint(None), "complaint"),  # no feedback report attached
    (ses_complaint(None, sub_type="OnAccountSuppressionList"), "suppressed"),
    (ses_delivery_delay(), "soft"),
    (ses_event("Reject"), "error"),
    (ses_event("Rendering Failure"), "error"),
]
ACKNOWLEDGED = ["Delivery", "Send", "Open", "Click", "Received"]


@pytest.mark.parametrize(("notification", "kind"), MAPPING)
def test_each_row_of_the_table_gives_its_kind(notification: dict[str, Any], kind: str) -> None:
    assert kinds(receive(notification)) == [kind]


@pytest.mark.parametrize("event_type", ACKNOWLEDGED)
def test_engagement_and_inbound_records_are_acknowledged(event_type: str) -> None:
    assert receive(ses_event(event_type)) == Parsed(acknowledged=(event_type,))


def test_a_not_spam_feedback_report_is_acknowledged_not_a_complaint() -> None:
    assert receive(ses_complaint("not-spam")) == Parsed(acknowledged=("Complaint",))


@pytest.mark.parametrize(
    ("preferences", "kind"),
    [
        ({"unsubscribeAll": True, "topicSubscriptionStatus": []}, "unsubscribe"),
        (
            {"unsubscribeAll": False, "topicSubscriptionStatus": [{"topicName": "w"}]},
            "subscribe",
        ),
        (
            {
                "unsubscribeAll": False,
                "topicSubscriptionStatus": [
                    {"topicName": "weekly", "subscriptionStatus": "OptIn"},
                    {"topicName": "daily", "subscriptionStatus": "OptOut"},
                ],
            },
            "unsubscribe",  # out of one topic is an opt-out to honour
        ),
        (
            {
                "unsubscribeAll": False,
                "topicSubscriptionStatus": [{"topicName": "w", "subscriptionStatus": "OptIn"}],
            },
            "subscribe",
        ),
    ],
)
def test_subscription_preferences(preferences: dict[str, Any], kind: str) -> None:
    notification = ses_event(
        "Subscription",
        subscription={"timestamp": "2026-01-02T03:04:05.000Z", "newTopicPreferences": preferences},
    )
    assert kinds(receive(notification)) == [kind]


def test_identity_notifications_use_notification_type() -> None:
    notification = ses_bounce(type_field="notificationType")
    assert "eventType" not in notification
    assert kinds(receive(notification)) == ["hard"]


def test_the_fields_of_a_bounce() -> None:
    notification = ses_bounce(
        email="Ann@Example.com", tags={"campaign": ["spring"], "ses:configuration-set": ["bounces"]}
    )
    notification["bounce"]["timestamp"] = "2026-03-01T10:00:00.250Z"
    request = signed(notification, message_id="5d4c7d2f-0000-4000-8000-000000000001")
    provider = make()
    provider.authenticate(request)
    [event] = provider.parse(request).events
    assert event.provider == "amazon_ses"
    assert event.id == "5d4c7d2f-0000-4000-8000-000000000001"
    assert event.dedup_id == "5d4c7d2f-0000-4000-8000-000000000001:Ann@Example.com"
    assert event.key.startswith("amazon_ses:5d4c7d2f-0000-4000-8000-000000000001:")
    assert "Ann@Example.com" not in event.key  # keys are logged; addresses never are
    assert event.email == "Ann@Example.com"
    assert event.type == "Bounce"
    assert event.bounced_at == datetime(2026, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert event.message_id == notification["mail"]["messageId"]
    assert event.description == "Permanent bounce (General)"
    assert event.details == "smtp; 550 5.1.1 user unknown"
    assert event.smtp_status == "5.1.1"
    assert event.tags == ()
    assert event.metadata == {"campaign": "spring", "ses:configuration-set": "bounces"}
    assert event.body == request.body  # replay parses the whole request again
    assert event.raw["bounce"]["bouncedRecipients"][0]["emailAddress"] == "Ann@Example.com"
    with pytest.raises(TypeError):
        event.raw["bounce"] = {}  # type: ignore[index]


def test_several_tag_values_are_joined_and_odd_ones_left_in_raw() -> None:
    notification = ses_bounce(tags={"team": ["a", "b"], "odd": [1], "text": "x"})
    [event] = receive(notification).events
    assert event.metadata == {"team": "a,b", "text": "x"}


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (
            "2018-10-08T14:05:45 +0000",
            datetime(2018, 10, 8, 14, 5, 45, tzinfo=UTC),
        ),  # a docs example
        ("2019-11-28T09:43:55.547Z", datetime(2019, 11, 28, 9, 43, 55, 547000, tzinfo=UTC)),
        ("2019-11-28T09:43:55", datetime(2019, 11, 28, 9, 43, 55, tzinfo=UTC)),
    ],
)
def test_event_times_are_aware(written: str, expected: datetime) -> None:
    notification = ses_bounce()
    notification["bounce"]["timestamp"] = written
    [event] = receive(notification).events
    assert event.bounced_at == expected
    assert event.bounced_at is not None and event.bounced_at.tzinfo is not None


@pytest.mark.parametrize("written", [None, "yesterday", 17, "9999-12-31T23:59:59-14:00"])
def test_an_unreadable_event_time_falls_back_to_the_sns_timestamp(written: Any) -> None:
    notification = ses_bounce()
    notification["bounce"]["timestamp"] = written
    envelope = sns_notification(notification, timestamp="2026-05-06T07:08:09.100Z")
    headers, body = sign_envelope(envelope)
    provider = make()
    request = post(PATH, body, headers)
    provider.authenticate(request)
    [event] = provider.parse(request).events
    assert event.bounced_at == datetime(2026, 5, 6, 7, 8, 9, 100000, tzinfo=UTC)


def test_one_event_per_recipient_each_with_its_own_key_and_diagnostics() -> None:
    recipients = [
        {
            "emailAddress": "ann@example.com",
            "action": "failed",
            "status": "5.1.1",
            "diagnosticCode": "no ann",
        },
        {
            "emailAddress": "bob@example.com",
            "action": "failed",
            "status": "5.1.2",
            "diagnosticCode": "no bob",
        },
        # providers.md: a docs example lists a still-delayed recipient in a Permanent bounce.
        {"emailAddress": "cy@example.com", "action": "delayed", "status": "4.0.0"},
        {"emailAddress": "di@example.com", "status": "4.4.7"},
    ]
    parsed = receive(ses_bounce(recipients=recipients), message_id="m-1")
    assert [e.email for e in parsed.events] == [r["emailAddress"] for r in recipients]
    assert kinds(parsed) == ["hard", "hard", "soft", "soft"]
    assert [e.dedup_id for e in parsed.events] == [f"m-1:{r['emailAddress']}" for r in recipients]
    assert len({e.key for e in parsed.events}) == len(recipients)
    assert [e.details for e in parsed.events] == ["no ann", "no bob", "", ""]
    assert [e.smtp_status for e in parsed.events] == ["5.1.1", "5.1.2", "4.0.0", "4.4.7"]
    # Each event's raw is the notification as its recipient sees it.
    for event in parsed.events:
        [entry] = event.raw["bounce"]["bouncedRecipients"]
        assert entry["emailAddress"] == event.email
        assert event.raw["mail"]["messageId"] == event.message_id


def test_a_complaint_names_every_complained_recipient() -> None:
    notification = ses_complaint()
    notification["complaint"]["complainedRecipients"] = [
        {"emailAddress": "ann@example.com"},
        {"emailAddress": "bob@example.com"},
    ]
    parsed = receive(notification)
    assert [(e.email, e.kind) for e in parsed.events] == [
        ("ann@example.com", BounceKind.COMPLAINT),
        ("bob@example.com", BounceKind.COMPLAINT),
    ]
    assert parsed.events[0].description == "Complaint (abuse)"


def test_message_wide_failures_give_one_event_per_destination() -> None:
    notification = ses_event("Rendering Failure")
    notification["mail"]["destination"] = ["Ann Example <ann@example.com>", "bob@example.com"]
    parsed = receive(notification)
    assert [e.email for e in parsed.events] == ["ann@example.com", "bob@example.com"]
    assert {e.details for e in parsed.events} == {"Attribute 'name' is missing"}
    assert len({e.key for e in parsed.events}) == 2
    assert receive(ses_event("Reject")).events[0].details == "Bad content"


def test_setup_notices_are_handshakes() -> None:
    assert receive(VALIDATION_MESSAGE).handshake
    assert receive(VALIDATION_MESSAGE + "\n").handshake
    notice = {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have ..."}
    assert receive(notice) == Parsed(handshake="SES notifications to this topic are set up")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Hello world!", "SNS Message is not an SES notification: it is not valid JSON"),
        ("[1, 2]", "is a JSON array"),
        ({"mail": {}}, "no eventType or notificationType"),
        ({"eventType": 3}, "no eventType or notificationType"),
        ({"eventType": "Teleport"}, "not one this version knows"),
        ({"eventType": "Bounce"}, "has no bounce object"),
        (
            {"eventType": "Bounce", "bounce": {"bounceType": "Permanent"}},
            "lists no bouncedRecipients",
        ),
        (
            {"eventType": "Bounce", "bounce": {"bouncedRecipients": [{"status": "5.0.0"}]}},
            "no emailAddress",
        ),
        (
            {"eventType": "Bounce", "bounce": {"bouncedRecipients": ["ann@example.com"]}},
            "is not an object",
        ),
        (
            {
                "eventType": "Bounce",
                "bounce": {"bounceType": 5, "bouncedRecipients": [{"emailAddress": "a@b.c"}]},
            },
            "bounce.bounceType is not a string",
        ),
        ({"eventType": "Reject", "reject": {}, "mail": {"destination": []}}, "lists no address"),
        ({"eventType": "Reject", "reject": {}, "mail": {"destination": [""]}}, "is not an address"),
    ],
)
def test_malformed_notifications_are_refused_with_a_reason(message: Any, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason) as caught:
        receive(message)
    assert "ann@example.com" not in caught.value.reason


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ([{"status": "5.1.1"}], "a recipient entry has no emailAddress string"),
        (["bob@example.com"], "an entry of bounce.bouncedRecipients is not an object"),
        (
            [{"emailAddress": " "}, 7],
            "2 recipient entries refused, the first: a recipient entry has no emailAddress string",
        ),
    ],
)
def test_a_bad_recipient_entry_is_refused_alone_and_the_others_dispatched(
    bad: list[Any], reason: str
) -> None:
    good = [{"emailAddress": "ann@example.com"}, {"emailAddress": "cy@example.com"}]
    message = ses_bounce(recipients=good)
    message["bounce"]["bouncedRecipients"] = [good[0], *bad, good[1]]
    request = signed(message)
    provider = make()
    provider.authenticate(request)
    parsed = provider.parse(request)
    assert [e.email for e in parsed.events] == ["ann@example.com", "cy@example.com"]
    [rejection] = parsed.rejected
    assert rejection.reason == reason
    # The whole notification is kept: replay parses it again and refuses it for the same reason.
    assert rejection.body == request.body
    assert make().parse(post(PATH, rejection.body)).rejected == parsed.rejected


def test_parse_alone_reads_a_stored_body_and_keeps_to_the_configured_topics() -> None:
    """What ``replay`` does: parse the kept body again, with no authenticate before it."""
    headers, body = sign_request(ses_bounce(), topic_arn=OTHER_TOPIC)
    with pytest.raises(PayloadError, match=f"SNS topic {OTHER_TOPIC} is not in topic_arns"):
        make().parse(post(PATH, body, headers))
    later = AmazonSES(topic_arns=[TOPIC, OTHER_TOPIC], fetch=SNSTestFetcher())
    assert kinds(later.parse(post(PATH, body))) == ["hard"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"Type": "Notification", "TopicArn": 5}',
        b'{"Type": "Shout", "TopicArn": "%s"}' % TOPIC.encode(),
    ],
)
def test_parse_refuses_what_is_not_an_sns_message(body: bytes) -> None:
    with pytest.raises(PayloadError):
        make().parse(post(PATH, body))


def test_raw_is_read_only_throughout() -> None:
    [event] = receive(ses_bounce()).events
    assert isinstance(event.raw, MappingProxyType)
    assert isinstance(event.raw["mail"], MappingProxyType)
    assert isinstance(event.raw["mail"]["destination"], tuple)
