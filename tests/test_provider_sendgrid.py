"""SendGrid Event Webhook bodies into Bounce objects, and the provider's construction.

Everything here calls the provider directly; requests through the middleware
are in ``test_provider_sendgrid_http.py``, fuzzing in ``..._fuzz.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bounce_middleware import BounceKind, PayloadError
from bounce_middleware.model import Bounce
from bounce_middleware.providers import Parsed
from bounce_middleware.providers.sendgrid import parse_sendgrid
from bounce_middleware.samples.sendgrid import (
    sendgrid_body,
    sendgrid_event,
)

# The table of providers.md ("SendGrid", Events -> kinds), written out independently
# of the provider's own: (event fields, kind).
MAPPING = [
    ({"event": "bounce", "type": "bounce"}, "hard"),
    ({"event": "bounce", "type": "blocked"}, "blocked"),
    ({"event": "bounce", "type": "expired"}, "soft"),
    ({"event": "bounce", "bounce_classification": "Invalid Address"}, "hard"),
    ({"event": "bounce", "bounce_classification": "Mailbox Unavailable"}, "hard"),
    ({"event": "bounce", "bounce_classification": "Technical Failure"}, "blocked"),
    ({"event": "bounce", "bounce_classification": "Content"}, "blocked"),
    ({"event": "bounce", "bounce_classification": "Reputation"}, "blocked"),
    ({"event": "bounce", "bounce_classification": "Frequency or Volume Too High"}, "blocked"),
    ({"event": "bounce", "bounce_classification": "Unclassified"}, "blocked"),
    # "type" wins over the classification when both are given.
    ({"event": "bounce", "type": "blocked", "bounce_classification": "Invalid Address"}, "blocked"),
    ({"event": "bounce"}, "hard"),  # the docs' older samples: no type, no classification
    ({"event": "bounce", "type": "something-new"}, "unknown"),
    ({"event": "dropped", "reason": "Bounced Address"}, "suppressed"),
    ({"event": "dropped", "reason": "Unsubscribed Address"}, "suppressed"),
    ({"event": "dropped", "reason": "Spam Reporting Address"}, "suppressed"),
    ({"event": "dropped", "reason": "Invalid"}, "hard"),
    ({"event": "dropped", "reason": "Invalid SMTPAPI header"}, "error"),
    ({"event": "dropped", "reason": "Spam Content"}, "error"),
    ({"event": "dropped", "reason": "Recipient List over Package Quota"}, "error"),
    ({"event": "dropped"}, "error"),
    ({"event": "deferred", "response": "400 try again later", "attempt": "5"}, "soft"),
    ({"event": "spamreport"}, "complaint"),
    ({"event": "unsubscribe"}, "unsubscribe"),
    ({"event": "group_unsubscribe", "asm_group_id": 10}, "unsubscribe"),
    ({"event": "group_resubscribe", "asm_group_id": 10}, "subscribe"),
]
ACKNOWLEDGED = ["processed", "delivered", "open", "click", "account_status_change", "new"]

EVENT: dict[str, Any] = {
    "email": "example@test.com",
    "timestamp": 1513299569,
    "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
    "event": "bounce",
    "category": "cat facts",
    "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
    "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    "reason": "500 unknown recipient",
    "status": "5.0.0",
    "type": "bounce",
}


def body(*events: Any) -> bytes:
    return json.dumps(list(events)).encode()


def one(event: dict[str, Any]) -> Bounce:
    parsed = parse_sendgrid(body(event))
    assert parsed.rejected == () and parsed.acknowledged == ()
    [bounce] = parsed.events
    return bounce


def refused(data: bytes) -> str:
    with pytest.raises(PayloadError) as caught:
        parse_sendgrid(data)
    return caught.value.reason


def rejected_alone(event: Any) -> str:
    """The reason an event is refused with, while a good event beside it is kept."""
    parsed = parse_sendgrid(body(event, EVENT))
    assert [e.id for e in parsed.events] == [EVENT["sg_event_id"]]
    [rejection] = parsed.rejected
    assert json.loads(rejection.body) == [event]
    return rejection.reason


# -- events -> kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "kind"), MAPPING, ids=lambda v: str(v))
def test_every_row_of_the_mapping_table(fields: dict[str, Any], kind: str) -> None:
    event = {k: v for k, v in EVENT.items() if k not in ("type", "reason")} | fields
    bounce = one(event)
    assert bounce.kind == BounceKind(kind)
    assert bounce.type == fields["event"]
    assert bounce.description  # every row says what happened


@pytest.mark.parametrize("name", ACKNOWLEDGED)
def test_engagement_and_unknown_events_are_acknowledged_not_dispatched(name: str) -> None:
    # Account events carry no email: an acknowledged event needs nothing but its name.
    parsed = parse_sendgrid(body({"event": name, "timestamp": "not read"}))
    assert parsed == Parsed(acknowledged=(name,))


def test_event_names_and_table_values_are_matched_case_insensitively() -> None:
    # SendGrid's reserved-keys docs sample spells "Processed"; drop reasons vary in case.
    assert parse_sendgrid(body({"event": "Processed"})).acknowledged == ("processed",)
    assert one(EVENT | {"event": "Bounce", "type": "Blocked"}).kind is BounceKind.BLOCKED
    dropped = EVENT | {"event": "dropped", "reason": " bounced address "}
    assert one(dropped).kind is BounceKind.SUPPRESSED


# -- fields ---------------------------------------------------------------------------------


def test_fields_of_a_documented_bounce() -> None:
    bounce = one(EVENT)
    assert bounce.provider == "sendgrid"
    assert bounce.id == "6g4ZI7SA-xmRDv57GoPIPw=="
    assert bounce.key == "sendgrid:6g4ZI7SA-xmRDv57GoPIPw=="
    assert bounce.dedup_id is None
    assert bounce.email == "example@test.com"
    assert bounce.bounced_at == datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC)
    # SendGrid's own id, not the Message-ID header (which stays in raw["smtp-id"]).
    assert bounce.message_id == "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
    assert bounce.raw["smtp-id"] == "<14c5d75ce93.dfd.64b469@ismtpd-555>"
    assert bounce.details == "500 unknown recipient"
    assert bounce.smtp_status == "5.0.0"
    assert bounce.tags == ("cat facts",)
    assert bounce.metadata == {}
    assert bounce.permanent


def test_deferred_details_come_from_the_response() -> None:
    bounce = one(sendgrid_event("soft", response="421 try later"))
    assert bounce.details == "421 try later"
    assert bounce.smtp_status is None


def test_categories_may_be_a_list() -> None:
    bounce = one(EVENT | {"category": ["newuser", "transactional"]})
    assert bounce.tags == ("newuser", "transactional")
    assert bounce.raw["category"] == ("newuser", "transactional")  # read-only all the way
    assert one(EVENT | {"category": []}).tags == ()
    assert one({k: v for k, v in EVENT.items() if k != "category"}).tags == ()


def test_custom_arguments_are_the_metadata() -> None:
    event = EVENT | {
        "userid": "1123",
        "template": "welcome",
        "marketing_campaign_name": "SendGrid's own field",
        "asm_group_id": 10,  # not a string: SendGrid's, never a custom argument
        "newsletter": {"newsletter_id": "1943530"},
    }
    assert one(event).metadata == {"userid": "1123", "template": "welcome"}


def test_raw_is_this_event_read_only() -> None:
    bounce = one(EVENT | {"pool": {"name": "p", "id": 210}})
    assert dict(bounce.raw) == EVENT | {"pool": {"name": "p", "id": 210}}
    with pytest.raises(TypeError):
        bounce.raw["email"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        bounce.raw["pool"]["id"] = 1


def test_each_event_keeps_itself_alone_and_parses_to_the_same_event_again() -> None:
    events = [EVENT, sendgrid_event("soft"), sendgrid_event("complaint", email="zoë@exämple.com")]
    parsed = parse_sendgrid(sendgrid_body(events))
    assert len(parsed.events) == 3
    for bounce, event in zip(parsed.events, events, strict=True):
        assert bounce.body.startswith(b"[{") and bounce.body.endswith(b"}]")
        assert b"\r\n" not in bounce.body
        assert json.loads(bounce.body) == [event]
        assert parse_sendgrid(bounce.body).events == (bounce,)
    assert "zoë@exämple.com".encode() in parsed.events[2].body  # UTF-8, not escapes


def test_without_sg_event_id_the_key_comes_from_message_event_email_and_time() -> None:
    event = sendgrid_event("unsubscribe", sg_event_id=None)
    bounce = one(event)
    assert bounce.id is None and bounce.dedup_id is not None
    assert bounce.key.startswith("sendgrid:dedup-sha256:")
    assert "john@example.com" not in bounce.key  # keys are logged; addresses never are
    assert one(dict(event)).key == bounce.key  # a retry: the same key
    for change in ({"timestamp": event["timestamp"] + 1}, {"email": "ann@example.com"}):
        assert one(event | change).key != bounce.key
    assert one(event | {"event": "group_unsubscribe"}).key != bounce.key
    assert one(event | {"sg_message_id": "other"}).key != bounce.key
    assert one(event | {"sg_event_id": ""}).key == bounce.key  # empty: as absent


def test_timestamps_integer_digit_string_or_absent() -> None:
    assert one(EVENT | {"timestamp": "1513299569"}).bounced_at == one(EVENT).bounced_at
    assert one(EVENT | {"timestamp": 1513299569.5}).bounced_at == datetime(
        2017, 12, 15, 0, 59, 29, 500000, tzinfo=UTC
    )
    assert one({k: v for k, v in EVENT.items() if k != "timestamp"}).bounced_at is None
    assert one(EVENT | {"timestamp": None}).bounced_at is None


def test_null_fields_count_as_absent() -> None:
    bounce = one(EVENT | {"reason": None, "status": None, "sg_message_id": None, "category": None})
    assert (bounce.details, bounce.smtp_status, bounce.message_id, bounce.tags) == (
        "",
        None,
        None,
        (),
    )


# -- malformed events: refused alone, the batch proceeds ------------------------------------


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("a string", "an event is a JSON string, not an object"),
        ([EVENT], "an event is a JSON array, not an object"),
        (None, "an event is a JSON null, not an object"),
        ({k: v for k, v in EVENT.items() if k != "event"}, "required field event is missing"),
        (EVENT | {"event": 7}, "field event must be a string, not a number"),
        (
            {k: v for k, v in EVENT.items() if k != "email"},
            "required field email is missing or empty",
        ),
        (EVENT | {"email": ""}, "required field email is missing or empty"),
        (EVENT | {"email": ["a@example.com"]}, "field email must be a string, not an array"),
        (EVENT | {"sg_event_id": 12}, "field sg_event_id must be a string, not a number"),
        (EVENT | {"status": 500}, "field status must be a string, not a number"),
        (EVENT | {"category": 3}, "field category must be a string or a list of strings"),
        (EVENT | {"category": ["a", 1]}, "field category must be a string or a list of strings"),
        (EVENT | {"timestamp": "yesterday"}, "field timestamp must be a Unix time in seconds"),
        (EVENT | {"timestamp": True}, "field timestamp must be a Unix time in seconds"),
        (EVENT | {"timestamp": 10**20}, "field timestamp is out of range"),
        (EVENT | {"timestamp": "9" * 14}, "field timestamp is out of range"),
        (EVENT | {"timestamp": 1e300}, "field timestamp is out of range"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_malformed_event_is_refused_alone(event: Any, reason: str) -> None:
    assert rejected_alone(event) == reason


def test_an_event_holding_a_lone_surrogate_is_refused_alone_and_kept_as_escapes() -> None:
    raw = body(EVENT).replace(b'"cat facts"', b'"cat \\ud800 facts"')
    parsed = parse_sendgrid(
        raw.replace(b"]", b"," + json.dumps(EVENT | {"sg_event_id": "x"}).encode() + b"]")
    )
    assert [e.id for e in parsed.events] == ["x"]
    [rejection] = parsed.rejected
    assert rejection.reason == "event holds an unpaired UTF-16 surrogate escape"
    assert b"\\ud800" in rejection.body
    rejection.body.decode("ascii")  # storable anywhere
    assert parse_sendgrid(rejection.body).rejected == parsed.rejected  # replay: same outcome


@pytest.mark.parametrize("depth", [500, 800])
@pytest.mark.parametrize("event", ["bounce", None])
def test_an_event_too_deep_to_write_back_is_refused_alone_as_it_arrived(
    depth: int, event: str | None
) -> None:
    # The decoder reads deeper than json's encoder writes: such an event cannot be
    # kept as [event] written again, so it is kept as the text it arrived as.
    deep = '{"a":' * depth + "1" + "}" * depth
    if event is None:
        received = "[" + deep + "]"  # not even an object
        reason = "an event is a JSON array, not an object"
    else:
        received = '{"event": "bounce", "email": "b@example.com", "x": ' + deep + "}"
        reason = "event is nested too deeply"
    data = b"\xef\xbb\xbf[ " + body(EVENT)[1:-1] + b" ,\r\n" + received.encode() + b" ]"
    parsed = parse_sendgrid(data)
    assert [e.id for e in parsed.events] == [EVENT["sg_event_id"]]
    [rejection] = parsed.rejected
    assert rejection.reason == reason
    assert rejection.body == b"[" + received.encode() + b"]"
    assert parse_sendgrid(rejection.body).rejected == parsed.rejected  # replay: still refused


def test_an_acknowledged_event_is_not_checked_beyond_its_name() -> None:
    parsed = parse_sendgrid(body({"event": "open", "email": 3, "category": {}}))
    assert parsed == Parsed(acknowledged=("open",))


# -- bodies that are not a batch at all ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "body is empty; SendGrid posts a JSON array of events"),
        (b" \r\n", "body is empty; SendGrid posts a JSON array of events"),
        (
            json.dumps(EVENT).encode(),
            "body is a JSON object; SendGrid posts a JSON array of events",
        ),
        (b"null", "body is JSON null; SendGrid posts a JSON array of events"),
        (b'"[]"', "body is a JSON string; SendGrid posts a JSON array of events"),
        (b"[{]", "body is not valid JSON"),
        (b"[NaN]", "body is not valid JSON (NaN is not allowed)"),
        (b"\xff[]", "body is not UTF-8 encoded JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is nested too deeply"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_body_that_is_not_a_json_array_is_refused_whole(data: bytes, reason: str) -> None:
    assert refused(data) == reason


def test_an_empty_array_is_a_ping_answered_200() -> None:
    assert parse_sendgrid(b"[]\r\n").handshake
    assert parse_sendgrid(b"\xef\xbb\xbf[]").events == ()  # a UTF-8 BOM is tolerated


def test_the_body_layout_sendgrid_signs_parses() -> None:
    data = sendgrid_body([EVENT, sendgrid_event("delivered")])
    assert data.endswith(b"}]\r\n") and b"},\r\n{" in data
    parsed = parse_sendgrid(data)
    assert (len(parsed.events), parsed.acknowledged) == (1, ("delivered",))
