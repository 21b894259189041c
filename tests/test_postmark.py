"""Postmark payloads (old and new shapes, every Type and record) into Bounce objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bounce_middleware import Bounce, BounceKind, PayloadError
from bounce_middleware.providers import Ignored, PostmarkProvider
from bounce_middleware.testing import postmark_bounce, postmark_legacy_bounce
from tests.conftest import load_payload

# The table of docs/postmark.md, written out independently of the provider's own.
TYPES = [
    ("HardBounce", 1, "hard"),
    ("Transient", 2, "soft"),
    ("Unsubscribe", 16, "unsubscribe"),
    ("Subscribe", 32, "subscribe"),
    ("AutoResponder", 64, "auto_reply"),
    ("AddressChange", 128, "auto_reply"),
    ("DnsError", 256, "soft"),
    ("SpamNotification", 512, "blocked"),
    ("OpenRelayTest", 1024, "unknown"),
    ("Unknown", 2048, "unknown"),
    ("SoftBounce", 4096, "soft"),
    ("VirusNotification", 8192, "blocked"),
    ("ChallengeVerification", 16384, "auto_reply"),
    ("BadEmailAddress", 100000, "hard"),
    ("SpamComplaint", 100001, "complaint"),
    ("ManuallyDeactivated", 100002, "suppressed"),
    ("Unconfirmed", 100003, "error"),
    ("Blocked", 100006, "blocked"),
    ("SMTPApiError", 100007, "error"),
    ("InboundError", 100008, "error"),
    ("DMARCPolicy", 100009, "blocked"),
    ("TemplateRenderingFailed", 100010, "error"),
]


def parse(data: dict[str, Any] | bytes) -> Bounce:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    result = PostmarkProvider().parse(body)
    assert isinstance(result, Bounce)
    return result


def reject(data: dict[str, Any] | bytes) -> str:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    with pytest.raises(PayloadError) as info:
        PostmarkProvider().parse(body)
    reason = info.value.reason
    assert "\n" not in reason
    return reason


@pytest.mark.parametrize(("type_", "code", "kind"), TYPES, ids=[t[0] for t in TYPES])
@pytest.mark.parametrize("shape", ["current", "legacy"])
def test_every_bounce_type_maps_to_its_kind(type_: str, code: int, kind: str, shape: str) -> None:
    factory = postmark_bounce if shape == "current" else postmark_legacy_bounce
    bounce = parse(factory(type_))
    assert bounce.kind is BounceKind(kind)
    assert bounce.type == type_
    assert bounce.type_code == code
    assert bounce.permanent is (kind in ("hard", "complaint", "suppressed"))


def test_unknown_type_is_accepted_as_unknown() -> None:
    bounce = parse(postmark_bounce("SomethingPostmarkAddsIn2030", TypeCode=123456))
    assert bounce.kind is BounceKind.UNKNOWN
    assert bounce.type == "SomethingPostmarkAddsIn2030"


def test_routing_ignores_type_code() -> None:
    # Older spam-complaint samples carry TypeCode 512 (SpamNotification's code).
    bounce = parse(load_payload("spam_complaint"))
    assert bounce.type_code == 512
    assert bounce.kind is BounceKind.COMPLAINT
    assert bounce.can_activate is False


def test_current_payload_fields() -> None:
    bounce = parse(load_payload("bounce"))
    assert bounce.provider == "postmark"
    assert bounce.id == "4323372036"
    assert bounce.key == "postmark:4323372036"
    assert bounce.email == "john@example.com"
    assert bounce.name == "Hard bounce"
    assert bounce.tag == "Invitation"
    assert bounce.message_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert bounce.message_stream == "outbound"
    assert bounce.server_id == 23
    assert bounce.from_address == "sender@example.com"
    assert bounce.subject == "Test subject"
    assert bounce.details == "Test bounce details"
    assert bounce.inactive is True
    assert bounce.can_activate is True
    assert bounce.dump_available is True
    assert bounce.content is not None and "SECRET-BOUNCE-CONTENT" in bounce.content
    assert bounce.bounced_at == datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)


def test_metadata_values_stay_strings_and_are_read_only() -> None:
    bounce = parse(load_payload("bounce"))
    assert dict(bounce.metadata) == {"a_key": "a_value", "b_key": "123"}
    with pytest.raises(TypeError):
        bounce.metadata["b_key"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        bounce.raw["Email"] = "x"  # type: ignore[index]
    assert bounce.raw["Metadata"]["b_key"] == "123"


def test_bounce_is_frozen() -> None:
    bounce = parse(load_payload("bounce"))
    with pytest.raises(AttributeError):
        bounce.email = "other@example.com"  # type: ignore[misc]


def test_legacy_2010_payload() -> None:
    bounce = parse(load_payload("legacy_2010"))
    assert bounce.id == "42"
    assert bounce.kind is BounceKind.HARD
    assert bounce.tag == ""
    assert bounce.message_id is None
    assert bounce.message_stream is None
    assert bounce.server_id is None
    assert bounce.from_address == ""
    assert bounce.subject == ""
    assert bounce.content is None
    assert dict(bounce.metadata) == {}
    assert bounce.bounced_at == datetime(
        2010, 6, 3, 21, 0, 19, 15509, tzinfo=timezone(timedelta(hours=-4))
    )


@pytest.mark.parametrize("field", ["ServerID", "ServerId"])
def test_server_id_in_both_spellings(field: str) -> None:
    data = postmark_legacy_bounce()
    data[field] = 1234
    assert parse(data).server_id == 1234


def test_server_id_lowercase_fixture() -> None:
    assert parse(load_payload("bounce_server_id_lowercase")).server_id == 1234


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2010-06-03T21:00:19.0155096-04:00",
            datetime(2010, 6, 4, 1, 0, 19, 15509, tzinfo=UTC),
        ),
        ("2019-11-05T16:33:54.9070259Z", datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)),
        ("2021-02-21T16:34:52Z", datetime(2021, 2, 21, 16, 34, 52, tzinfo=UTC)),
        ("2020-02-01T10:53:34.416071Z", datetime(2020, 2, 1, 10, 53, 34, 416071, tzinfo=UTC)),
        ("2021-02-21T16:34:52", datetime(2021, 2, 21, 16, 34, 52, tzinfo=UTC)),
    ],
)
def test_every_bounced_at_format_is_aware(text: str, expected: datetime) -> None:
    bounced_at = parse(postmark_bounce(BouncedAt=text)).bounced_at
    assert bounced_at is not None
    assert bounced_at.tzinfo is not None
    assert bounced_at == expected


def test_empty_tag_and_description_stay_empty() -> None:
    bounce = parse(postmark_bounce(Tag="", Description=""))
    assert bounce.tag == ""
    assert bounce.description == ""


def test_null_optional_fields_count_as_absent() -> None:
    bounce = parse(postmark_bounce(Subject=None, Tag=None, MessageID=None, Metadata=None))
    assert bounce.subject == ""
    assert bounce.tag == ""
    assert bounce.message_id is None


def test_spam_complaint_record() -> None:
    bounce = parse(load_payload("spam_complaint"))
    assert bounce.kind is BounceKind.COMPLAINT
    assert bounce.permanent


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("HardBounce", BounceKind.HARD),
        ("SpamComplaint", BounceKind.COMPLAINT),
        ("ManualSuppression", BounceKind.SUPPRESSED),
    ],
)
def test_subscription_change_suppression(reason: str, kind: BounceKind) -> None:
    data = load_payload("subscription_change")
    data["SuppressionReason"] = reason
    bounce = parse(data)
    assert bounce.kind is kind
    assert bounce.email == "bounced-address@wildbit.com"
    assert bounce.type == "SubscriptionChange"
    assert bounce.id is None
    assert bounce.key.startswith("postmark:sha256:")
    assert bounce.bounced_at == datetime(2020, 2, 1, 10, 53, 34, 416071, tzinfo=UTC)
    assert bounce.inactive is True


def test_subscription_reactivation_is_subscribe() -> None:
    bounce = parse(load_payload("subscription_reactivation"))
    assert bounce.kind is BounceKind.SUBSCRIBE
    assert bounce.message_id is None
    assert bounce.inactive is False
    assert not bounce.permanent


def test_event_without_id_is_keyed_by_body_digest() -> None:
    body = json.dumps(load_payload("subscription_change")).encode()
    first, again = parse(body), parse(body)
    assert first.key == again.key
    other = json.dumps({**load_payload("subscription_change"), "Recipient": "x@y.z"}).encode()
    assert parse(other).key != first.key


@pytest.mark.parametrize("name", ["delivery", "open", "click"])
def test_engagement_records_are_ignored(name: str) -> None:
    result = PostmarkProvider().parse(json.dumps(load_payload(name)).encode())
    assert isinstance(result, Ignored)
    assert result.record_type == name.capitalize()


def test_unknown_record_type_is_ignored() -> None:
    result = PostmarkProvider().parse(b'{"RecordType": "SMTPApiError2031", "Recipient": "x"}')
    assert result == Ignored("SMTPApiError2031")


def test_inbound_email_is_refused_with_a_clear_reason() -> None:
    assert "inbound e-mail" in reject(load_payload("inbound"))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"not json", "not valid JSON"),
        (b'{"ID": 1,', "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[1, 2]", "array"),
        (b'"a string"', "string"),
        (b"42", "number"),
        (b"null", "null"),
        (b'{"ID": NaN, "Type": "HardBounce", "Email": "a@b.c"}', "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    ],
    ids=[
        "empty",
        "blank",
        "text",
        "truncated",
        "not-utf8",
        "array",
        "string",
        "number",
        "null",
        "nan",
        "deep-arrays",
        "deep-objects",
    ],
)
def test_malformed_bodies(body: bytes, fragment: str) -> None:
    assert fragment in reject(body)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"Type": None}, "required field Type is missing"),
        ({"Email": None}, "required field Email is missing"),
        ({"ID": None}, "required field ID is missing"),
        ({"ID": "42"}, "field ID must be a integer, not a string"),
        ({"ID": True}, "field ID must be a integer, not a boolean"),
        ({"ID": 4.5}, "field ID must be a integer, not a number"),
        ({"Type": 1}, "field Type must be a string"),
        ({"Email": ["a@b.c"]}, "field Email must be a string, not a array"),
        ({"Inactive": "yes"}, "field Inactive must be a boolean"),
        ({"Metadata": []}, "field Metadata must be a object"),
        ({"Metadata": {"n": 1}}, "Metadata must map names to strings"),
        ({"BouncedAt": "yesterday"}, "BouncedAt is not an ISO 8601 timestamp"),
        ({"RecordType": 7}, "field RecordType must be a string"),
    ],
)
def test_wrong_or_missing_fields(change: dict[str, Any], fragment: str) -> None:
    data = postmark_bounce(Email="secret-address@example.com")
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    reason = reject(data)
    assert fragment in reason
    assert "secret-address" not in reason  # never echo the body


def test_subscription_change_requires_its_fields() -> None:
    data = load_payload("subscription_change")
    del data["SuppressSending"]
    assert "SuppressSending" in reject(data)
