"""Brevo webhook bodies into Bounce objects, the provider's construction and its samples.

Everything here calls the provider directly; requests through the middleware
are in ``test_provider_brevo_http.py``, fuzzing in ``..._fuzz.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bounce_middleware import BounceKind, PayloadError
from bounce_middleware.model import Bounce
from bounce_middleware.providers import Parsed
from bounce_middleware.providers.brevo import parse_brevo
from bounce_middleware.samples.brevo import (
    brevo_batch,
    brevo_body,
)

K = BounceKind

# The table of providers.md ("Brevo", Events -> kinds), written out independently of
# the provider's own.
MAPPING = [
    ("hard_bounce", "hard"),
    ("invalid_email", "hard"),
    ("soft_bounce", "soft"),
    ("deferred", "soft"),
    ("blocked", "suppressed"),
    ("spam", "complaint"),
    ("complaint", "complaint"),
    ("unsubscribed", "unsubscribe"),
    ("unsubscribe", "unsubscribe"),  # django-anymail's spelling
    ("error", "error"),
    ("Hard_Bounce", "hard"),  # names are matched case-insensitively
]
ACKNOWLEDGED = [
    "request", "delivered", "opened", "unique_opened", "proxy_open", "unique_proxy_open",
    "click", "list_addition", "something_new",
]  # fmt: skip

# Written from the facts of providers.md (a real capture's shape), not copied from it.
EVENT: dict[str, Any] = {
    "id": 4242,
    "email": "ann@example.com",
    "message-id": "<202401021530.1234567890@smtp-relay.mailin.fr>",
    "date": "2024-01-02 16:30:05",
    "tags": ["signup", "eu"],
    "tag": '["signup","eu"]',
    "event": "hard_bounce",
    "subject": "Welcome",
    "sending_ip": "192.0.2.7",
    "ts_event": 1704209405,
    "ts": 1704209405,
    "reason": " 550 5.1.1 <ann@example.com>: Recipient address rejected",
    "ts_epoch": 1704209405123,
}


def body(*events: Any) -> bytes:
    return json.dumps(list(events)).encode()


def one(event: dict[str, Any]) -> Bounce:
    """The one Bounce of a single-event POST (the default shape)."""
    parsed = parse_brevo(json.dumps(event).encode())
    assert parsed.rejected == () and parsed.acknowledged == ()
    [bounce] = parsed.events
    return bounce


def refusal(event: dict[str, Any]) -> str:
    """Why a single-event POST is refused; the same event in a batch is refused alone."""
    with pytest.raises(PayloadError) as refused:
        parse_brevo(json.dumps(event).encode())
    batch = parse_brevo(body(EVENT, event))
    assert len(batch.events) == 1
    [rejection] = batch.rejected
    assert rejection.reason == refused.value.reason
    assert json.loads(rejection.body) == [event]
    return refused.value.reason


# -- kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "kind"), MAPPING)
def test_every_documented_event_maps_to_its_kind(event: str, kind: str) -> None:
    bounce = one(EVENT | {"event": event})
    assert bounce.kind == BounceKind(kind)
    assert bounce.type == event.lower()
    assert bounce.description and "\n" not in bounce.description


def test_deferred_says_brevo_keeps_trying_and_is_not_permanent() -> None:
    bounce = one(EVENT | {"event": "deferred"})
    assert "keeps trying" in bounce.description
    assert not bounce.permanent


@pytest.mark.parametrize("event", ACKNOWLEDGED)
def test_other_events_are_acknowledged_without_the_bounce_fields(event: str) -> None:
    # Nothing else is read: a delivery without an address is still answered 200.
    parsed = parse_brevo(json.dumps({"event": event, "email": 5}).encode())
    assert parsed == Parsed(acknowledged=(event,))


# -- fields ---------------------------------------------------------------------------------


def test_the_fields_of_a_hard_bounce() -> None:
    bounce = one(EVENT)
    assert bounce.provider == "brevo"
    assert bounce.id is None  # "id" is the webhook's, not the event's
    assert bounce.email == "ann@example.com"
    assert bounce.kind is BounceKind.HARD
    assert bounce.message_id == "<202401021530.1234567890@smtp-relay.mailin.fr>"
    assert bounce.details == "550 5.1.1 <ann@example.com>: Recipient address rejected"
    assert bounce.bounced_at == datetime(2024, 1, 2, 15, 30, 5, 123000, tzinfo=UTC)
    assert bounce.tags == ("signup", "eu")
    assert bounce.metadata == {}
    assert bounce.smtp_status == "5.1.1"  # the enhanced status code in reason
    assert bounce.raw["subject"] == "Welcome"
    assert bounce.raw["tags"] == ("signup", "eu")  # read-only all the way down


def test_a_multi_line_reason_is_kept_whole_without_its_leading_space() -> None:
    reason = " 550-5.1.1 first line\n   550 5.1.1 second line"
    assert one(EVENT | {"reason": reason}).details == reason[1:]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # Milliseconds, as real captures send them.
        ({"ts_epoch": 1704209405123}, datetime(2024, 1, 2, 15, 30, 5, 123000, tzinfo=UTC)),
        # Seconds, as some of Brevo's doc samples show it.
        ({"ts_epoch": 1704209405}, datetime(2024, 1, 2, 15, 30, 5, tzinfo=UTC)),
        ({"ts_epoch": "1704209405123"}, datetime(2024, 1, 2, 15, 30, 5, 123000, tzinfo=UTC)),
        ({"ts_epoch": 1704209405.5}, datetime(2024, 1, 2, 15, 30, 5, 500000, tzinfo=UTC)),
        # Without ts_epoch: ts_event, then ts, in seconds.
        ({"ts_event": 1704209405, "ts": 1704200000}, datetime(2024, 1, 2, 15, 30, 5, tzinfo=UTC)),
        ({"ts": 1704209405}, datetime(2024, 1, 2, 15, 30, 5, tzinfo=UTC)),
        # date is in the account's timezone: never read as a time.
        ({"date": "2024-01-02 16:30:05"}, None),
        ({}, None),
    ],
)
def test_bounced_at(fields: dict[str, Any], expected: datetime | None) -> None:
    event = {k: v for k, v in EVENT.items() if k not in ("ts_epoch", "ts_event", "ts", "date")}
    assert one(event | fields).bounced_at == expected


def test_ts_epoch_wins_over_the_account_timezone_fields() -> None:
    shifted = EVENT | {"ts_event": 1704209405 + 3600, "ts": 1704209405 + 3600}
    assert one(shifted).bounced_at == datetime(2024, 1, 2, 15, 30, 5, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ts_epoch": "yesterday"}, "field ts_epoch must be a Unix time, not a string"),
        ({"ts_epoch": True}, "field ts_epoch must be a Unix time, not a boolean"),
        ({"ts_epoch": 10**20}, "field ts_epoch is out of range"),
        ({"ts_epoch": "9" * 17}, "field ts_epoch is out of range"),
        ({"ts_epoch": None, "ts_event": [1]}, "field ts_event must be a Unix time, not an array"),
    ],
)
def test_a_time_that_is_no_time_refuses_the_event(fields: dict[str, Any], reason: str) -> None:
    assert refusal(EVENT | fields) == reason


@pytest.mark.parametrize(
    ("fields", "tags"),
    [
        ({"tags": ["a", "b"], "tag": '["x"]'}, ("a", "b")),  # tags wins
        ({"tags": None, "tag": '["welcome","tag2"]'}, ("welcome", "tag2")),  # JSON-encoded
        ({"tags": None, "tag": "newsletter"}, ("newsletter",)),  # X-Mailin-Tag
        ({"tags": None, "tag": "Order confirmation"}, ("Order confirmation",)),  # a template
        ({"tags": None, "tag": "[draft] welcome"}, ("[draft] welcome",)),  # looks like JSON
        ({"tags": None, "tag": "[1, 2]"}, ("[1, 2]",)),  # JSON, but not strings
        ({"tags": None, "tag": ""}, ()),
        ({"tags": None, "tag": None}, ()),
        ({"tags": []}, ()),
        ({"tags": "single"}, ("single",)),
    ],
)
def test_tags(fields: dict[str, Any], tags: tuple[str, ...]) -> None:
    assert one(EVENT | fields).tags == tags


@pytest.mark.parametrize(
    ("fields", "tags"),
    [
        ({"tags": [1, 2]}, ()),
        ({"tags": ["a", 1, None, "", "b"]}, ("a", "b")),
        ({"tags": {"a": "b"}, "tag": '["x"]'}, ("x",)),  # tags unreadable: tag instead
        ({"tags": 5, "tag": None}, ()),
        ({"tags": None, "tag": 7}, ()),
        ({"tags": None, "tag": ["x"]}, ()),
    ],
)
def test_tags_of_another_type_are_left_in_raw_and_refuse_nothing(
    fields: dict[str, Any], tags: tuple[str, ...]
) -> None:
    # Tags only describe the event, as for the other providers: the bounce still counts.
    for parsed in (one(EVENT | fields), *parse_brevo(body([EVENT | fields])).events):
        assert (parsed.kind, parsed.tags) == (BounceKind.HARD, tags)
        for name, value in fields.items():
            assert parsed.raw.get(name) == (tuple(value) if type(value) is list else value)


@pytest.mark.parametrize(
    ("custom", "metadata"),
    [
        ('{"user_id": "42", "plan": "free"}', {"user_id": "42", "plan": "free"}),
        # Anything that is not a JSON object of strings is kept whole, as sent.
        ("some_custom_header", {"X-Mailin-custom": "some_custom_header"}),
        ('{"user_id": 42}', {"X-Mailin-custom": '{"user_id": 42}'}),
        ('["a", "b"]', {"X-Mailin-custom": '["a", "b"]'}),
        ("{not json", {"X-Mailin-custom": "{not json"}),
        ('{"x": "\\ud800"}', {"X-Mailin-custom": '{"x": "\\ud800"}'}),
        ("", {}),
        (None, {}),
        # Not a string, as Brevo documents it: an object of strings is read as one.
        ({"user_id": "42"}, {"user_id": "42"}),
        ({"user_id": 42}, {"X-Mailin-custom": '{"user_id":42}'}),
        (7, {"X-Mailin-custom": "7"}),
    ],
)
def test_metadata_from_x_mailin_custom(custom: Any, metadata: dict[str, str]) -> None:
    assert dict(one(EVENT | {"X-Mailin-custom": custom}).metadata) == metadata


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"email": None}, "required field email is missing or empty"),
        ({"email": ""}, "required field email is missing or empty"),
        ({"email": ["ann@example.com"]}, "field email must be a string, not an array"),
        ({"message-id": 12}, "field message-id must be a string, not a number"),
        ({"reason": {"code": 550}}, "field reason must be a string, not an object"),
        ({"event": None}, "required field event is missing"),
        ({"event": 1}, "field event must be a string, not a number"),
    ],
)
def test_a_malformed_bounce_is_refused(fields: dict[str, Any], reason: str) -> None:
    event = {k: v for k, v in (EVENT | fields).items() if v is not None}
    assert refusal(event) == reason


# -- bodies ---------------------------------------------------------------------------------


def test_each_bounce_keeps_its_event_alone_in_a_body_parse_reads_again() -> None:
    for parsed in (parse_brevo(json.dumps(EVENT).encode()), parse_brevo(body(EVENT))):
        [bounce] = parsed.events
        assert json.loads(bounce.body) == [EVENT]
        assert parse_brevo(bounce.body).events == (bounce,)


def test_a_single_event_is_kept_as_received_in_brackets() -> None:
    raw = json.dumps(EVENT, indent=4).encode()
    [bounce] = parse_brevo(b"\xef\xbb\xbf \r\n" + raw + b"\n").events
    assert bounce.body == b"[" + raw + b"]"


def test_a_batch_dispatches_its_bounces_and_acknowledges_the_rest() -> None:
    events = brevo_batch("delivered", "hard", "opened", "complaint", "soft")
    parsed = parse_brevo(brevo_body(events))
    assert [b.kind for b in parsed.events] == [K.HARD, K.COMPLAINT, K.SOFT]
    assert parsed.acknowledged == ("delivered", "opened")
    assert parsed.rejected == () and parsed.handshake == ""
    assert [json.loads(b.body) for b in parsed.events] == [[events[1]], [events[3]], [events[4]]]


def test_one_bad_event_of_a_batch_is_refused_alone() -> None:
    parsed = parse_brevo(body(EVENT, "not an event", [EVENT], EVENT | {"event": "spam"}))
    assert [b.kind for b in parsed.events] == [K.HARD, K.COMPLAINT]
    assert [r.reason for r in parsed.rejected] == [
        "an event is a JSON string, not an object",
        "an event is a JSON array, not an object",
    ]
    assert [json.loads(r.body) for r in parsed.rejected] == [["not an event"], [[EVENT]]]


@pytest.mark.parametrize("text", [b"[]", b" [ ]\r\n", b"\xef\xbb\xbf[]"])
def test_an_empty_batch_is_a_ping(text: bytes) -> None:
    assert parse_brevo(text) == Parsed(handshake="empty batch: no events")


def test_a_single_event_with_a_bom_or_whitespace_is_read() -> None:
    raw = json.dumps(EVENT).encode()
    for variant in (b"\xef\xbb\xbf" + raw, b"\r\n  " + raw + b"\n"):
        assert parse_brevo(variant).events == (one(EVENT),)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "body is empty; Brevo posts a JSON object or an array of them"),
        (b"not json", "body is not valid JSON"),
        (b'{"id": xxxxx, "event": "hard_bounce"}', "body is not valid JSON"),  # doc copies
        (b'"hard_bounce"', "body is a JSON string; expected an object"),
        (b"null", "body is JSON null; expected an object"),
        (b"[1,", "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not UTF-8 encoded JSON"),
    ],
)
def test_a_body_that_is_no_event_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_brevo(raw)
    assert refused.value.reason == reason


def test_an_inbound_parse_payload_is_refused_and_says_where_it_belongs() -> None:
    inbound = {"items": [{"Uuid": ["x"], "Subject": "hello"}]}
    with pytest.raises(PayloadError, match="inbound-parse payload"):
        parse_brevo(json.dumps(inbound).encode())
