"""Mailgun: the event -> kind table, the fields of a Bounce, and malformed bodies.

Bodies are built here from the facts of providers.md ("Mailgun") and signed with
the recipe written out below (hmac directly), not with the library's signer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bounce_middleware import BounceKind, PayloadError
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.mailgun import Mailgun
from bounce_middleware.request import WebhookRequest, post

KEY = "mailgun-signing-key-for-tests"
NOW = 1_700_000_000.0
TOKEN = "a" * 50


def recipe(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def event(name: str = "failed", /, **fields: Any) -> dict[str, Any]:
    """An event-data object, fields as providers.md lists them."""
    data: dict[str, Any] = {
        "id": "Xq3bQ1lYTc2-jQ8yG8w4Zg",
        "timestamp": 1700000000.123456,
        "log-level": "error",
        "event": name,
        "recipient": "ann@example.com",
        "recipient-domain": "example.com",
        "message": {
            "headers": {
                "to": "Ann <ann@example.com>",
                "message-id": "20231114221320.1.ABC@mg.example.com",
                "from": "shop@mg.example.com",
                "subject": "Your order",
            }
        },
        "tags": ["orders"],
        "user-variables": {"user-id": "17"},
    }
    if name == "failed":
        data.update(severity="permanent", reason="bounce")
        data["delivery-status"] = {
            "code": 550,
            "enhanced-code": "5.1.1",
            "message": "5.1.1 mailbox unknown",
            "description": "",
        }
    data.update(fields)
    return data


def body_of(
    event_data: object,
    *,
    key: str = KEY,
    timestamp: str = str(int(NOW)),
    token: str = TOKEN,
) -> bytes:
    signature = {"timestamp": timestamp, "token": token, "signature": recipe(key, timestamp, token)}
    return json.dumps({"signature": signature, "event-data": event_data}).encode()


def thaw(value: object) -> Any:
    """A read-only decoded value as plain JSON data again."""
    return json.loads(json.dumps(value, default=dict))


def provider(**options: Any) -> Mailgun:
    options.setdefault("signing_key", KEY)
    options.setdefault("clock", lambda: NOW)
    return Mailgun(**options)


def request(body: bytes, content_type: str = "application/json") -> WebhookRequest:
    return post("/hooks/mailgun", body, {"Content-Type": content_type})


def parse(event_data: object) -> Parsed:
    mailgun = provider()
    incoming = request(body_of(event_data))
    mailgun.authenticate(incoming)
    return mailgun.parse(incoming)


def kind_of(event_data: dict[str, Any]) -> BounceKind:
    [bounce] = parse(event_data).events
    return bounce.kind


def refusal(event_data: object) -> str:
    with pytest.raises(PayloadError) as info:
        parse(event_data)
    assert "\n" not in info.value.reason
    return info.value.reason


# The table of providers.md, written out independently of the provider's own.
DISPATCHED = [
    ("failed", {"severity": "permanent", "reason": "bounce"}, "hard"),
    ("failed", {"severity": "permanent", "reason": "generic"}, "hard"),
    ("failed", {"severity": "permanent", "reason": "espblock"}, "hard"),
    ("failed", {"severity": "permanent", "flags": {"is-delayed-bounce": True}}, "hard"),
    ("failed", {"severity": "permanent", "reason": "suppress-bounce"}, "suppressed"),
    ("failed", {"severity": "permanent", "reason": "suppress-unsubscribe"}, "suppressed"),
    ("failed", {"severity": "permanent", "reason": "suppress-complaint"}, "suppressed"),
    ("failed", {"severity": "temporary", "reason": "generic"}, "soft"),
    ("failed", {"severity": "temporary", "reason": "greylisted"}, "soft"),
    ("failed", {"severity": "someday"}, "unknown"),
    ("complained", {}, "complaint"),
    ("unsubscribed", {}, "unsubscribe"),
    ("rejected", {"reject": {"reason": "sandbox", "description": ""}}, "error"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fields", "kind"), DISPATCHED)
def test_every_dispatched_event_maps_to_its_kind(
    name: str, fields: dict[str, Any], kind: str
) -> None:
    [bounce] = parse(event(name, **fields)).events
    assert bounce.kind is BounceKind(kind)
    assert bounce.type == name
    assert bounce.provider == "mailgun"
    assert bounce.permanent is (kind in ("hard", "suppressed", "complaint"))


def test_a_failed_event_without_severity_is_dispatched_as_unknown() -> None:
    data = event()
    del data["severity"]
    assert kind_of(data) is BounceKind.UNKNOWN


@pytest.mark.parametrize(
    "name", ["accepted", "delivered", "opened", "clicked", "stored", "list_member_uploaded"]
)
def test_engagement_and_unknown_events_are_acknowledged_not_dispatched(name: str) -> None:
    parsed = parse(event(name))
    assert parsed.events == ()
    assert parsed.acknowledged == (name,)


def test_an_acknowledged_event_needs_no_other_field() -> None:
    assert parse({"event": "opened", "recipient": 7}).acknowledged == ("opened",)


def test_fields_of_a_hard_bounce() -> None:
    body = body_of(event())
    mailgun = provider()
    incoming = request(body)
    mailgun.authenticate(incoming)
    [bounce] = mailgun.parse(incoming).events
    assert bounce.id == "Xq3bQ1lYTc2-jQ8yG8w4Zg"
    assert bounce.email == "ann@example.com"
    assert bounce.bounced_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert bounce.message_id == "20231114221320.1.ABC@mg.example.com"
    assert bounce.details == "5.1.1 mailbox unknown"
    assert bounce.description == ""
    assert bounce.smtp_status == "5.1.1"
    assert bounce.tags == ("orders",)
    assert dict(bounce.metadata) == {"user-id": "17"}
    assert thaw(bounce.raw) == json.loads(body)["event-data"]
    with pytest.raises(TypeError):
        bounce.raw["event"] = "delivered"  # type: ignore[index]
    assert bounce.body == body


def test_the_key_holds_id_timestamp_and_recipient_because_ids_repeat_across_days() -> None:
    [first] = parse(event()).events
    [next_day] = parse(event(timestamp=1700086400.5)).events
    [other_recipient] = parse(event(recipient="bob@example.com")).events
    keys = {first.key, next_day.key, other_recipient.key}
    assert len(keys) == 3
    assert all(k.startswith("mailgun:Xq3bQ1lYTc2-jQ8yG8w4Zg:") for k in keys)
    # The same event delivered twice (a retry, even with a new signature) has one key.
    [again] = parse(event()).events
    assert again.key == first.key


def test_an_event_without_id_is_keyed_by_its_body() -> None:
    data = event()
    del data["id"]
    [bounce] = parse(data).events
    assert bounce.id is None
    assert bounce.key.startswith("mailgun:sha256:")


def test_description_and_a_mailgun_code_of_a_suppressed_address() -> None:
    data = event(reason="suppress-bounce")
    data["delivery-status"] = {
        "code": 605,
        "enhanced-code": "",
        "message": "",
        "description": "Not delivering to previously bounced address",
    }
    [bounce] = parse(data).events
    assert bounce.description == "Not delivering to previously bounced address"
    assert bounce.details == ""
    assert bounce.smtp_status is None  # 605 is Mailgun's own code, not an SMTP reply


def test_the_smtp_code_stands_in_for_a_missing_enhanced_code() -> None:
    data = event()
    data["delivery-status"] = {"code": 550, "enhanced-code": "", "message": "No Such User Here"}
    [bounce] = parse(data).events
    assert bounce.smtp_status == "550"
    assert bounce.details == "No Such User Here"


def test_a_rejected_send_takes_its_recipient_from_the_to_header() -> None:
    data = event("rejected", reject={"reason": "Sandbox domain", "description": "not allowed"})
    del data["recipient"]
    data["message"]["headers"]["to"] = '"Ann, Smith" <ann@example.com>, bob@example.com'
    [bounce] = parse(data).events
    assert bounce.kind is BounceKind.ERROR
    assert bounce.email == "ann@example.com"
    assert bounce.description == "not allowed"
    assert bounce.details == "Sandbox domain"


def test_an_event_without_any_recipient_has_an_empty_email() -> None:
    data = event("complained")
    del data["recipient"]
    del data["message"]
    [bounce] = parse(data).events
    assert bounce.email == ""
    assert bounce.message_id is None


def test_user_variables_that_are_not_strings_are_given_as_json() -> None:
    variables = {"plain": "x", "n": 7, "flag": True, "none": None, "obj": {"a": [1, "é"]}}
    [bounce] = parse(event(**{"user-variables": variables})).events
    assert dict(bounce.metadata) == {
        "plain": "x",
        "n": "7",
        "flag": "true",
        "none": "null",
        "obj": '{"a":[1,"é"]}',
    }


def test_a_double_encoded_user_variable_is_left_as_sent() -> None:
    [bounce] = parse(event(**{"user-variables": {"name": '"x"'}})).events
    assert bounce.metadata["name"] == '"x"'


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tags", "orders"),
        ("tags", [1, None]),
        ("user-variables", ["a"]),
        ("delivery-status", "550"),
        ("message", []),
        ("reject", 3),
    ],
)
def test_descriptive_fields_of_the_wrong_type_are_left_in_raw(field: str, value: object) -> None:
    [bounce] = parse(event(**{field: value})).events
    assert bounce.kind is BounceKind.HARD
    assert bounce.raw[field] == (tuple(value) if isinstance(value, list) else value)


def test_a_timestamp_out_of_range_gives_no_bounced_at() -> None:
    [bounce] = parse(event(timestamp=1e300)).events
    assert bounce.bounced_at is None
    [integer] = parse(event(timestamp=1700000000)).events
    assert integer.bounced_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_data", "expected"),
    [
        (None, "event-data is missing"),
        ([event()], "event-data must be an object, not an array"),
        ("failed", "event-data must be an object, not a string"),
        ({"recipient": "ann@example.com"}, "event-data.event is missing"),
        (event(event=["failed"]), "event-data.event must be a string, not an array"),
        (event(id=17), "event-data.id must be a string, not a number"),
        (event(recipient=["ann@example.com"]), "event-data.recipient must be a string"),
        (event(timestamp="1700000000"), "event-data.timestamp must be a number, not a string"),
        (event(timestamp=True), "event-data.timestamp must be a number, not a boolean"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(event_data: object, expected: str) -> None:
    assert expected in refusal(event_data)


def test_a_body_without_event_data_is_refused() -> None:
    mailgun = provider()
    timestamp = str(int(NOW))
    signature = {"timestamp": timestamp, "token": TOKEN, "signature": recipe(KEY, timestamp, TOKEN)}
    incoming = request(json.dumps({"signature": signature}).encode())
    mailgun.authenticate(incoming)
    with pytest.raises(PayloadError, match="event-data is missing"):
        mailgun.parse(incoming)


def test_parse_reads_a_body_never_authenticated_here() -> None:
    # `bounce-middleware replay` parses a stored body again, with no signature check.
    body = body_of(event(reason="suppress-bounce"))
    [bounce] = provider().parse(request(body)).events
    assert bounce.kind is BounceKind.SUPPRESSED
    assert bounce.body == body
    with pytest.raises(PayloadError, match="not valid JSON"):
        provider().parse(request(b"{"))


def test_the_body_is_decoded_once_for_authenticate_and_parse() -> None:
    mailgun = provider()
    incoming = request(body_of(event()))
    mailgun.authenticate(incoming)
    [first] = mailgun.parse(incoming).events
    [second] = mailgun.parse(incoming).events
    # Both come from what authenticate decoded, not from decoding the body again.
    assert first.raw is second.raw
    [fresh] = mailgun.parse(request(incoming.body)).events
    assert fresh.raw is not first.raw
