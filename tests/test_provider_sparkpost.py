"""SparkPost webhook bodies into Bounce objects: the kind table, fields, keys and the traps.

Everything here calls the parser directly; authentication and construction are
in ``test_provider_sparkpost_auth.py``, requests through the middleware in
``..._http.py``, fuzzing in ``..._fuzz.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bounce_middleware import BounceKind, PayloadError
from bounce_middleware.model import Bounce
from bounce_middleware.providers import Parsed
from bounce_middleware.providers.sparkpost import parse_sparkpost

# SparkPost's bounce classification codes (providers.md, "SparkPost"), written out
# independently of the provider's table: code -> kind.
BOUNCE_CLASSES = {
    "10": "hard", "30": "hard",
    "90": "unsubscribe",
    "20": "soft", "21": "soft", "22": "soft", "23": "soft", "24": "soft", "40": "soft",
    "70": "soft",
    "60": "auto_reply", "100": "auto_reply",
    "50": "blocked", "51": "blocked", "52": "blocked", "53": "blocked", "54": "blocked",
    "25": "suppressed",
    "80": "subscribe",
    "1": "unknown",
}  # fmt: skip
OTHER_EVENTS = [
    ("policy_rejection", "suppressed"),
    ("delay", "soft"),
    ("spam_complaint", "complaint"),
    ("list_unsubscribe", "unsubscribe"),
    ("link_unsubscribe", "unsubscribe"),
    ("generation_failure", "error"),
    ("generation_rejection", "error"),
]
ACKNOWLEDGED = [
    "injection", "delivery", "open", "initial_open", "click", "amp_open", "amp_initial_open",
    "amp_click", "relay_injection", "relay_delivery", "relay_permfail", "sms_status",
    "something_new",
]  # fmt: skip

#: A bounce as SparkPost's reference lays one out (values of our own).
EVENT: dict[str, Any] = {
    "type": "bounce",
    "bounce_class": "22",
    "campaign_id": "spring-launch",
    "customer_id": "314",
    "error_code": "552",
    "event_id": "84211376599012345",
    "friendly_from": "news@shop.example",
    "message_id": "0e0d94b7a85e4fc2b8a1",
    "msg_from": "msprvs1=abc=bounces-314@sparkpostmail.com",
    "num_retries": "0",
    "rcpt_meta": {"user_id": "1001", "plan": "pro", "score": 7, "nested": {"a": "b"}},
    "rcpt_tags": ["newsletter", "eu"],
    "rcpt_to": "ann.lee@mail.example",
    "raw_rcpt_to": "Ann.Lee@Mail.Example",
    "rcpt_type": "to",
    "raw_reason": "552 5.2.2 <Ann.Lee@Mail.Example>: mailbox full (from 203.0.113.9)",
    "reason": "552 5.2.2 <Ann.Lee@Mail.Example>: mailbox full (from a.b.c.d)",
    "subject": "Spring is here",
    "timestamp": "1712345678",
    "transmission_id": "30241117392651264",
}


def element(event_class: str = "message_event", **fields: Any) -> dict[str, Any]:
    """One batch element around ``EVENT`` with ``fields`` changed (None removes one)."""
    event = {**EVENT, **fields}
    return {"msys": {event_class: {k: v for k, v in event.items() if v is not None}}}


def body_of(*items: Any) -> bytes:
    return json.dumps(list(items)).encode("utf-8")


def parse(*items: Any) -> Parsed:
    return parse_sparkpost(body_of(*items))


def one(**fields: Any) -> Bounce:
    [bounce] = parse(element(**fields)).events
    return bounce


# -- kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["bounce", "out_of_band"])
@pytest.mark.parametrize(("code", "kind"), sorted(BOUNCE_CLASSES.items()))
def test_bounce_and_out_of_band_by_bounce_class(event_type: str, code: str, kind: str) -> None:
    bounce = one(type=event_type, bounce_class=code)
    assert bounce.kind == BounceKind(kind)
    assert bounce.type == event_type
    assert bounce.description.endswith(f"(SparkPost bounce class {code})")


@pytest.mark.parametrize("code", ["0", "2", "26", "99", "101", "999999"])
def test_an_unlisted_bounce_class_is_unknown_and_named(code: str) -> None:
    bounce = one(bounce_class=code)
    assert bounce.kind == BounceKind.UNKNOWN
    assert bounce.description == f"Bounce of an unlisted SparkPost bounce class ({code})"


@pytest.mark.parametrize("value", [None, "", "ten", "1.5", "-10", "1234567", True, 10.0, [10]])
def test_a_missing_or_unreadable_bounce_class_is_unknown_and_never_quoted(value: Any) -> None:
    bounce = one(type="out_of_band", bounce_class=value)
    assert bounce.kind == BounceKind.UNKNOWN
    assert bounce.description == "Out-of-band bounce without a readable SparkPost bounce class"


def test_a_bounce_class_as_a_number_or_with_leading_zeros_is_read() -> None:
    assert one(bounce_class=10).kind == BounceKind.HARD
    assert one(bounce_class="010").description == "Invalid recipient (SparkPost bounce class 10)"


@pytest.mark.parametrize(("event_type", "kind"), OTHER_EVENTS)
def test_other_events_by_type(event_type: str, kind: str) -> None:
    bounce = one(type=event_type, bounce_class=None)
    assert bounce.kind == BounceKind(kind)
    assert bounce.type == event_type


@pytest.mark.parametrize("event_type", ACKNOWLEDGED)
def test_other_events_are_acknowledged_by_name(event_type: str) -> None:
    parsed = parse(element("track_event", type=event_type, raw_rcpt_to=None, rcpt_to=None))
    assert parsed == Parsed(acknowledged=(event_type,))


def test_the_type_is_matched_in_any_case_and_kept_as_sent() -> None:
    bounce = one(type="Bounce", bounce_class="10")
    assert bounce.kind == BounceKind.HARD and bounce.type == "Bounce"


@pytest.mark.parametrize("fbtype", ["not-spam", "Not-Spam", " not-spam "])
def test_a_not_spam_feedback_report_is_acknowledged(fbtype: str) -> None:
    parsed = parse(element(type="spam_complaint", fbtype=fbtype))
    assert parsed == Parsed(acknowledged=("spam_complaint_not_spam",))


def test_a_complaint_names_its_feedback_type_only_when_known() -> None:
    abuse = one(type="spam_complaint", fbtype="abuse")
    assert abuse.description == "The recipient reported the message as spam (abuse feedback report)"
    for fbtype in ("x\r\nforged", 3, None):
        odd = one(type="spam_complaint", fbtype=fbtype)
        assert odd.kind == BounceKind.COMPLAINT
        assert odd.description == "The recipient reported the message as spam"


def test_descriptions_name_the_bounce_class_and_say_a_delay_is_not_final() -> None:
    assert one(bounce_class="22").description == "Mailbox full (SparkPost bounce class 22)"
    assert (
        one(type="out_of_band", bounce_class="21").description
        == "Out-of-band bounce: DNS failure (SparkPost bounce class 21)"
    )
    delay = one(type="delay", bounce_class="24")
    assert "not final" in delay.description and "SparkPost keeps trying" in delay.description
    assert delay.description.endswith(": timeout (SparkPost bounce class 24)")
    assert "not final" in one(type="delay", bounce_class=None).description
    assert (
        one(type="policy_rejection", bounce_class="25").description
        == "Not sent: SparkPost's policy refused the message (SparkPost bounce class 25)"
    )
    for bounce in parse(*[element(bounce_class=c) for c in BOUNCE_CLASSES]).events:
        assert bounce.description.isprintable() and "\n" not in bounce.description


# -- fields --------------------------------------------------------------------------------


def test_the_fields_of_a_bounce() -> None:
    bounce = one()
    assert bounce.provider == "sparkpost"
    assert bounce.id == "84211376599012345"
    # The event_id and a digest of what tells the events of a batch apart (SparkPost's
    # samples repeat one event_id across a batch's distinct events).
    assert bounce.key.startswith("sparkpost:84211376599012345:")
    assert json.loads(bounce.dedup_id or "")[1:] == ["bounce", "1712345678", "ann.lee@mail.example"]
    assert one(type="out_of_band").key != bounce.key
    assert one(rcpt_to="bob@mail.example").key != bounce.key
    assert bounce.email == "Ann.Lee@Mail.Example"  # raw_rcpt_to: the address as sent
    assert bounce.kind == BounceKind.SOFT
    assert bounce.bounced_at == datetime(2024, 4, 5, 19, 34, 38, tzinfo=UTC)
    assert bounce.message_id == "30241117392651264"  # the Transmissions API's id
    assert bounce.raw["message_id"] == "0e0d94b7a85e4fc2b8a1"  # SparkPost's own, in raw
    assert bounce.details == EVENT["raw_reason"]
    # The enhanced status code, as every provider's smtp_status; error_code stays in raw.
    assert bounce.smtp_status == "5.2.2" and bounce.raw["error_code"] == "552"
    assert bounce.tags == ("newsletter", "eu", "spring-launch")
    assert dict(bounce.metadata) == {"user_id": "1001", "plan": "pro"}
    assert bounce.raw["rcpt_tags"] == ("newsletter", "eu")  # read-only all the way down
    with pytest.raises(TypeError):
        bounce.raw["type"] = "delivery"  # type: ignore[index]
    assert json.loads(bounce.body) == [element()]
    assert parse_sparkpost(bounce.body).events == (bounce,)


def test_fallbacks_when_optional_fields_are_missing() -> None:
    bounce = one(
        raw_rcpt_to=None,
        raw_reason=None,
        campaign_id=None,
        rcpt_tags=None,
        rcpt_meta=None,
        transmission_id=None,
        error_code=None,
        timestamp=None,
    )
    assert bounce.email == "ann.lee@mail.example"
    assert bounce.details == EVENT["reason"]
    assert bounce.tags == () and dict(bounce.metadata) == {}
    assert bounce.message_id is None and bounce.bounced_at is None
    assert bounce.smtp_status == "5.2.2"  # from reason, without raw_reason or error_code
    assert one(raw_reason=None, reason=None).details == ""


def test_liberal_where_sparkpost_might_vary() -> None:
    bounce = one(
        timestamp=1712345678,
        event_id=84211376599012345,
        transmission_id=30241117392651264,
        error_code=552,
        rcpt_tags="solo",
        campaign_id="solo",
        rcpt_meta="not an object",
    )
    assert bounce.bounced_at == datetime(2024, 4, 5, 19, 34, 38, tzinfo=UTC)
    assert bounce.id == "84211376599012345" and bounce.message_id == "30241117392651264"
    assert bounce.smtp_status == "5.2.2" and bounce.raw["error_code"] == 552
    assert bounce.tags == ("solo",) and dict(bounce.metadata) == {}
    assert one(rcpt_tags=["a", 3, None, "", "b"]).tags == ("a", "b", "spring-launch")


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"raw_reason": "550 5.1.1 <ann@mail.example>: Recipient address rejected"}, "5.1.1"),
        ({"raw_reason": None, "reason": "554 5.7.1 blocked (from a.b.c.d)"}, "5.7.1"),
        ({"raw_reason": "1902 Generation rendering failed", "error_code": "1902"}, None),
        ({"raw_reason": "421 deferred - 4.16.55.1", "error_code": "421"}, None),
        ({"raw_reason": None, "reason": None}, None),
        ({"error_code": {"odd": True}}, "5.2.2"),  # not read: left in raw
    ],
)
def test_the_smtp_status_is_the_enhanced_code_of_the_reason_never_error_code(
    fields: dict[str, Any], status: str | None
) -> None:
    assert one(**fields).smtp_status == status


def test_an_event_without_event_id_is_keyed_by_message_type_time_and_recipient() -> None:
    bounce = one(event_id=None)
    assert bounce.id is None
    assert json.loads(bounce.dedup_id or "") == [
        "0e0d94b7a85e4fc2b8a1", "bounce", "1712345678", "ann.lee@mail.example",
    ]  # fmt: skip
    assert bounce.key.startswith("sparkpost:dedup-sha256:")
    assert "ann" not in bounce.key
    assert one(event_id="").key == bounce.key  # an empty id is no id
    assert one(event_id=None).key == bounce.key  # a retry: the same key
    others = [
        one(event_id=None, type="out_of_band"),
        one(event_id=None, timestamp="1712345679"),
        one(event_id=None, rcpt_to="bob@mail.example"),
        one(event_id=None, message_id="another"),
    ]
    assert len({bounce.key, *(b.key for b in others)}) == 5
    without_message = one(event_id=None, message_id=None)
    assert json.loads(without_message.dedup_id or "")[0] == "30241117392651264"


# -- pings and batches ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b'[{"msys": {}}]', b"[]", b'[{"msys":{}},{"msys":{}}]\n'])
def test_the_ping_and_an_empty_array_are_handshakes(body: bytes) -> None:
    parsed = parse_sparkpost(body)
    assert parsed.handshake and not parsed.events and not parsed.acknowledged
    assert not parsed.rejected


def test_a_ping_element_inside_a_batch_of_events_is_acknowledged() -> None:
    parsed = parse({"msys": {}}, element())
    assert [b.id for b in parsed.events] == [EVENT["event_id"]]
    assert parsed.acknowledged == ("ping",) and not parsed.handshake


def test_inbound_relay_messages_without_a_type_are_acknowledged() -> None:
    relay = {"msys": {"relay_message": {"rcpt_to": "in@example.com", "content": {}}}}
    assert parse(relay) == Parsed(acknowledged=("relay_message",))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"msys": {}}', 'body is a JSON object; SparkPost posts a JSON array of {"msys": ...}'),
        (b"null", "body is JSON null; SparkPost posts"),
        (b"", "body is empty"),
        (b"[{]", "body is not valid JSON"),
        (b"\xff[]", "body is not UTF-8 encoded JSON"),
        (b"[NaN]", "body is not valid JSON (NaN is not allowed)"),
    ],
)
def test_a_body_that_is_no_array_is_refused_whole(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_sparkpost(body)
    assert caught.value.reason.startswith(reason)


BAD_ELEMENTS = [
    ("not an object", ["msys"], "an event is a JSON array, not an object"),
    ("no msys", {"mysys": {}}, "required field msys is missing"),
    ("msys a list", {"msys": []}, "field msys must be an object, not an array"),
    ("two classes", {"msys": {"a": {}, "b": {}}}, "field msys holds 2 event classes"),
    ("event not an object", {"msys": {"message_event": "x"}}, "the event in msys is a string"),
    ("no type", element(type=None), "required field type is missing"),
    ("type a number", element(type=3), "field type must be a string, not a number"),
    ("no recipient", element(raw_rcpt_to=None, rcpt_to=None), "required field rcpt_to is"),
    ("empty recipient", element(raw_rcpt_to="", rcpt_to=""), "required field rcpt_to is"),
    ("recipient a list", element(raw_rcpt_to=["a"]), "field raw_rcpt_to must be a string"),
    ("reason an object", element(raw_reason={}), "field raw_reason must be a string"),
    ("id a float", element(event_id=1.5), "field event_id must be a string, not a number"),
    ("id a boolean", element(transmission_id=True), "field transmission_id must be a string"),
    ("words for a time", element(timestamp="yesterday"), "field timestamp must be a Unix time"),
    ("ISO time", element(timestamp="2024-04-05T19:34:38Z"), "field timestamp must be a Unix"),
    ("boolean time", element(timestamp=True), "field timestamp must be a Unix time"),
    ("time too late", element(timestamp="9" * 13), "field timestamp is out of range"),
    ("time far too late", element(timestamp="9" * 5000), "field timestamp is out of range"),
    ("huge number", element(timestamp=10**40), "field timestamp is out of range"),
    ("surrogate", element(subject="\ud800"), "event holds an unpaired UTF-16 surrogate"),
]


@pytest.mark.parametrize(
    ("bad", "reason"), [(b, r) for _, b, r in BAD_ELEMENTS], ids=[n for n, _, _ in BAD_ELEMENTS]
)
def test_a_malformed_element_is_refused_alone(bad: Any, reason: str) -> None:
    good = element(event_id="1"), element(event_id="2", type="delivery")
    body = json.dumps([good[0], bad, good[1]]).encode("utf-8", "surrogatepass")
    parsed = parse_sparkpost(body)
    assert [b.id for b in parsed.events] == ["1"] and parsed.acknowledged == ("delivery",)
    [rejection] = parsed.rejected
    assert rejection.reason.startswith(reason)
    assert json.loads(rejection.body) == [bad]
    # What replay does with the kept body: refused again, for the same reason.
    assert parse_sparkpost(rejection.body).rejected == (rejection,)


def test_acknowledged_events_are_not_checked_further() -> None:
    parsed = parse(element(type="click", timestamp="soon", raw_rcpt_to=3, event_id={}))
    assert parsed == Parsed(acknowledged=("click",))


def test_a_post_of_one_element_keeps_the_body_as_received() -> None:
    body = b"\n[ " + json.dumps(element()).encode() + b" ]\r\n"
    [bounce] = parse_sparkpost(body).events
    assert bounce.body == body
    assert parse_sparkpost(bounce.body).events == (bounce,)
    assert parse_sparkpost(b'[{"msys": {"track_event": {"type": "open"}}}]') == Parsed(
        acknowledged=("open",)
    )


@pytest.mark.parametrize(
    ("bad", "reason"), [(b, r) for _, b, r in BAD_ELEMENTS], ids=[n for n, _, _ in BAD_ELEMENTS]
)
def test_a_post_of_one_malformed_element_is_refused_alone_too(bad: Any, reason: str) -> None:
    body = json.dumps([bad]).encode("utf-8", "surrogatepass")
    parsed = parse_sparkpost(body)
    assert not parsed.events and not parsed.acknowledged and not parsed.handshake
    [rejection] = parsed.rejected
    assert rejection.reason.startswith(reason)
    assert json.loads(rejection.body) == [bad]
