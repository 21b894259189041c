"""Postmark payloads (old and new shapes, every Type and record) into Bounce objects."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bounce_middleware import Bounce, BounceKind, PayloadError
from bounce_middleware.providers import Parsed
from bounce_middleware.providers.postmark import parse_postmark
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
    [result] = parse_postmark(body).events
    return result


def reject(data: dict[str, Any] | bytes) -> str:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    with pytest.raises(PayloadError) as info:
        parse_postmark(body)
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
    result = parse_postmark(json.dumps(load_payload(name)).encode())
    assert result == Parsed(acknowledged=(name.capitalize(),))


def test_unknown_record_type_is_ignored() -> None:
    result = parse_postmark(b'{"RecordType": "SMTPApiError2031", "Recipient": "x"}')
    assert result == Parsed(acknowledged=("SMTPApiError2031",))


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
        ({"ID": None}, "required field ID is missing"),
        ({"ID": "42"}, "field ID must be an integer, not a string"),
        ({"ID": True}, "field ID must be an integer, not a boolean"),
        ({"ID": 4.5}, "field ID must be an integer, not a number"),
        ({"Type": 1}, "field Type must be a string"),
        ({"Email": ["a@b.c"]}, "field Email must be a string, not an array"),
        ({"Email": {"a": "b"}}, "field Email must be a string, not an object"),
        ({"Inactive": "yes"}, "field Inactive must be a boolean"),
        ({"Metadata": []}, "field Metadata must be an object, not an array"),
        ({"Metadata": {"n": 1}}, "Metadata must map names to strings"),
        ({"BouncedAt": "yesterday"}, "BouncedAt is not an ISO 8601 timestamp"),
        ({"RecordType": 7}, "field RecordType must be a string, not a number"),
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


# --- fields Postmark has been seen to leave out (issue 10) ---------------------------------


def test_unsubscribe_record_without_email_or_bounced_at_is_accepted() -> None:
    # Postmark sent a Bounce record of Type Unsubscribe with no Email, BouncedAt,
    # Inactive or CanActivate at all; it must not be refused (Postmark drops a 400).
    bounce = parse(load_payload("unsubscribe_without_email"))
    assert bounce.kind is BounceKind.UNSUBSCRIBE
    assert bounce.email == ""
    assert isinstance(bounce.email, str)
    assert bounce.bounced_at is None
    assert bounce.key == "postmark:7310054712"
    assert bounce.inactive is False
    assert bounce.can_activate is True


@pytest.mark.parametrize("type_", [t[0] for t in TYPES])
@pytest.mark.parametrize("absent", ["missing", "null"])
def test_email_and_bounced_at_are_optional_for_every_type(type_: str, absent: str) -> None:
    data = postmark_bounce(type_)
    for field in ("Email", "BouncedAt"):
        if absent == "missing":
            del data[field]
        else:
            data[field] = None
    bounce = parse(data)
    assert (bounce.email, bounce.bounced_at, bounce.type) == ("", None, type_)


def test_id_and_type_stay_required() -> None:
    # What identifies a Postmark bounce: without it, a body is refused, not guessed at.
    data = postmark_bounce()
    del data["ID"]
    assert reject(data) == "required field ID is missing"
    data = postmark_bounce()
    del data["Type"]
    assert reject(data) == "required field Type is missing"


@pytest.mark.parametrize(
    "data",
    [{}, {"Email": "a@example.com"}, {"Recipient": "a@example.com"}, {"Hello": "world"}],
    ids=["empty-object", "email-only", "recipient-only", "unrelated"],
)
def test_bodies_that_are_no_postmark_record_are_refused(data: dict[str, Any]) -> None:
    assert reject(data).startswith("not a Postmark record")


# --- records without RecordType (before 2019) ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "record_type"), [("legacy_delivery", "Delivery"), ("legacy_open", "Open")]
)
def test_legacy_engagement_records_are_recognised_by_shape(name: str, record_type: str) -> None:
    data = load_payload(name)
    assert "RecordType" not in data
    result = parse_postmark(json.dumps(data).encode())
    assert result == Parsed(acknowledged=(record_type,))


def test_legacy_click_is_recognised_by_shape() -> None:
    data = {
        "Recipient": "ann@example.org",
        "ReceivedAt": "2018-05-02T10:00:00Z",
        "OriginalLink": "https://example.org/welcome",
        "ClickLocation": "HTML",
    }
    assert parse_postmark(json.dumps(data).encode()) == Parsed(acknowledged=("Click",))


@pytest.mark.parametrize("marker", ["Recipient", "DeliveredAt", "ReceivedAt", "FirstOpen"])
def test_a_legacy_bounce_is_never_taken_for_an_engagement_record(marker: str) -> None:
    # The 2010-era bounce also lacks RecordType; an ID or a Type makes it a bounce
    # whatever else the body holds.
    data = load_payload("legacy_2010")
    data[marker] = True if marker == "FirstOpen" else "2016-09-12T08:15:42Z"
    bounce = parse(data)
    assert bounce.key == "postmark:42"
    assert bounce.kind is BounceKind.HARD


def test_a_legacy_bounce_missing_its_id_is_refused_not_ignored() -> None:
    data = load_payload("legacy_2010")
    del data["ID"]
    data["Recipient"] = "john@example.com"
    data["DeliveredAt"] = "2016-09-12T08:15:42Z"
    assert reject(data) == "required field ID is missing"


# --- timestamps handlers can use -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:00:00-01:00",
        "9999-12-31T12:00:00-23:59",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:59:59+01:00",
    ],
)
def test_a_timestamp_outside_utc_is_treated_as_absent(text: str) -> None:
    bounce = parse(postmark_bounce(BouncedAt=text))
    assert bounce.bounced_at is None
    assert bounce.raw["BouncedAt"] == text  # the text itself is kept
    change = load_payload("subscription_change")
    change["ChangedAt"] = text
    assert parse(change).bounced_at is None


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59+14:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59",
        "9999-12-30T23:59:59-14:00",
        "0001-01-01T00:00:00-14:00",
        "0001-01-01T00:00:00Z",
        "0001-01-02T00:00:00+14:00",
    ],
)
def test_timestamps_at_the_calendar_edges_that_convert_are_kept(text: str) -> None:
    bounced_at = parse(postmark_bounce(BouncedAt=text)).bounced_at
    assert bounced_at is not None
    assert bounced_at.astimezone(UTC).tzinfo is UTC


# --- exact reasons ---------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [4301, 5000, 50_000])
def test_an_integer_too_long_for_python_gets_its_own_reason(digits: int) -> None:
    body = json.dumps(postmark_bounce(ID=1)).replace('"ID": 1,', '"ID": ' + "7" * digits + ",")
    assert "7" * digits in body
    assert reject(body.encode()) == (
        f"body holds an integer of {digits} digits; this server reads at most 4300"
    )


def test_a_negative_integer_too_long_counts_its_digits_only() -> None:
    body = b'{"ID": 1, "Type": "HardBounce", "TypeCode": -' + b"1" * 4301 + b"}"
    assert reject(body) == "body holds an integer of 4301 digits; this server reads at most 4300"


def test_an_integer_of_4300_digits_is_accepted_and_its_key_is_digested() -> None:
    body = json.dumps(postmark_bounce(ID=1)).replace('"ID": 1,', '"ID": ' + "7" * 4300 + ",")
    bounce = parse(body.encode())
    assert bounce.id == "7" * 4300
    assert bounce.key.startswith("postmark:id-sha256:")
    assert len(bounce.key) == len("postmark:id-sha256:") + 64


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"null", "body is JSON null; expected an object"),
        (b"[1]", "body is a JSON array; expected an object"),
        (b"1", "body is a JSON number; expected an object"),
    ],
)
def test_body_type_reasons_read_well(body: bytes, reason: str) -> None:
    assert reject(body) == reason


@pytest.mark.parametrize("value", [1, 1.5, "x", True, [1], {"a": "b"}])
@pytest.mark.parametrize(("field", "expected"), [("ID", int), ("Tag", str), ("Metadata", dict)])
def test_every_type_reason_uses_the_right_article(value: Any, field: str, expected: type) -> None:
    if type(value) is expected:
        return
    data = postmark_bounce()
    data[field] = value
    reason = reject(data)
    for wrong in (" a integer", " a object", " a array", " an string", " an number"):
        assert wrong not in reason


# --- keys short enough for any store's unique index -------------------------------------


def _bounce_with_id(event_id: str) -> Bounce:
    return Bounce(provider="postmark", id=event_id, email="", kind=BounceKind.HARD, type="x")


def test_an_id_of_200_characters_is_kept_in_the_key() -> None:
    assert _bounce_with_id("9" * 200).key == "postmark:" + "9" * 200


@pytest.mark.parametrize("length", [201, 4300, 100_000])
def test_a_longer_id_is_digested_in_the_key(length: int) -> None:
    event_id = "9" * length
    key = _bounce_with_id(event_id).key
    assert key == "postmark:id-sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    assert _bounce_with_id("8" + event_id[1:]).key != key


def test_a_non_ascii_long_id_is_digested_too() -> None:
    key = _bounce_with_id("é" * 300).key
    assert key.startswith("postmark:id-sha256:") and key.isascii()
