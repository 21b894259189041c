"""What the JSON providers share: the field readers of ``providers.fields``, and deep nesting.

A parser must raise nothing but PayloadError for any body. Python's JSON
decoder reads objects nested deeper than its encoder (and the recursive
helpers) can write back, so a body nested some hundreds deep in a field the
parser turns into text (tags, metadata) decoded fine and then crashed with
RecursionError: a 500 retried for a day instead of a rejected record. Each
provider is checked with 600 levels in its tag or metadata fields, called
from a shallow stack and from as deep a one as a web framework adds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounce_middleware import PayloadError
from bounce_middleware.providers.base import JSON_DECODER, Parsed
from bounce_middleware.providers.brevo import parse_brevo
from bounce_middleware.providers.fields import (
    a,
    check_strings,
    compact_json,
    enhanced_status,
    identity_json,
    not_an_object,
    optional_string,
    unix_time,
)
from bounce_middleware.providers.mailgun_events import parse_mailgun
from bounce_middleware.providers.mailjet_events import parse_mailjet
from bounce_middleware.providers.mandrill_events import parse_mandrill
from bounce_middleware.providers.resend_events import parse_resend
from bounce_middleware.providers.sendgrid import parse_sendgrid
from bounce_middleware.providers.sparkpost import parse_sparkpost
from bounce_middleware.samples.brevo import brevo_event
from bounce_middleware.samples.mailgun import mailgun_event
from bounce_middleware.samples.mailjet import mailjet_event
from bounce_middleware.samples.mandrill import mandrill_body, mandrill_event
from bounce_middleware.samples.resend import resend_event
from bounce_middleware.samples.sendgrid import sendgrid_event
from bounce_middleware.samples.sparkpost import sparkpost_event

DEPTH = 600
NESTED = "nested too deeply"


def nested(depth: int = DEPTH) -> dict[str, Any]:
    """``{"a": {"a": ...}}``, ``depth`` objects deep."""
    top: dict[str, Any] = {}
    inner = top
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return top


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


def at_stack_depth(frames: int, call: Callable[[], Parsed]) -> Parsed:
    """``call()`` under ``frames`` more Python frames, as a framework's stack adds."""
    if frames == 0:
        return call()
    return at_stack_depth(frames - 1, call)


def _mailgun(event_data: dict[str, Any]) -> bytes:
    return dumps({"signature": {}, "event-data": event_data})


def _resend_tags() -> bytes:
    return dumps(resend_event("hard", tags={"plan": nested()}))


# Provider -> (parse, a body with one deep event, a body with that event and a good one or
# None when the provider posts one event per body).
CASES: dict[str, tuple[Callable[[bytes], Parsed], bytes, bytes | None]] = {
    "mailjet": (
        parse_mailjet,
        dumps(mailjet_event("hard", Payload=nested())),
        dumps([mailjet_event("hard", Payload=nested()), mailjet_event("soft")]),
    ),
    "sparkpost": (
        parse_sparkpost,
        dumps([sparkpost_event("hard", rcpt_meta={"user": nested()})]),
        dumps([sparkpost_event("hard", rcpt_meta={"user": nested()}), sparkpost_event("soft")]),
    ),
    "brevo": (
        parse_brevo,
        dumps(brevo_event("hard") | {"X-Mailin-custom": nested()}),
        dumps([brevo_event("hard") | {"X-Mailin-custom": nested()}, brevo_event("soft")]),
    ),
    "resend": (parse_resend, _resend_tags(), None),
    "mandrill": (
        parse_mandrill,
        mandrill_body([mandrill_event("hard", msg={"metadata": {"user": nested()}})]),
        mandrill_body(
            [mandrill_event("hard", msg={"metadata": {"user": nested()}}), mandrill_event("soft")]
        ),
    ),
    "mailgun": (parse_mailgun, _mailgun(mailgun_event("hard", user_variables=nested())), None),
    "sendgrid": (
        parse_sendgrid,
        dumps([sendgrid_event("hard", plan=nested())]),
        dumps([sendgrid_event("hard", plan=nested()), sendgrid_event("soft")]),
    ),
}


def outcome(parse: Callable[[bytes], Parsed], body: bytes, frames: int) -> Parsed | PayloadError:
    try:
        return at_stack_depth(frames, lambda: parse(body))
    except PayloadError as exc:
        return exc


@pytest.mark.parametrize("provider", sorted(CASES))
def test_a_deeply_nested_tag_or_metadata_is_refused_never_a_recursion_error(
    provider: str,
) -> None:
    parse, alone, batch = CASES[provider]
    for frames in (0, 100, 300):
        result = outcome(parse, alone, frames)
        if isinstance(result, PayloadError):
            assert NESTED in result.reason
        else:  # refused alone in its batch, or accepted: never written back as text
            assert all(NESTED in r.reason for r in result.rejected)
            assert len(result.events) + len(result.rejected) == 1
        if batch is None:
            continue
        parsed = outcome(parse, batch, frames)
        if isinstance(parsed, PayloadError):  # the decoder itself ran out of stack
            assert parsed.reason == "body is nested too deeply" and frames > 0
            continue
        [good] = parsed.events
        assert good.kind == "soft"
        [rejection] = parsed.rejected
        assert NESTED in rejection.reason
        # replay reads the kept event again: refused again, or (alone, kept as received,
        # never written back) accepted; never a crash
        again = outcome(parse, rejection.body, 0)
        assert not isinstance(again, PayloadError)
        assert [NESTED in r.reason for r in again.rejected] in ([True], [])
        assert len(again.events) + len(again.rejected) == 1


@pytest.mark.parametrize("provider", ["mailgun", "resend"])
def test_a_single_event_provider_refuses_the_body_as_nested_too_deeply(provider: str) -> None:
    parse, alone, _ = CASES[provider]
    with pytest.raises(PayloadError, match="body is nested too deeply"):
        parse(alone)


# -- the field readers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("550 5.1.1 User unknown", "5.1.1"),
        ("smtp;550 5.1.1 <ann@example.com>: Recipient address rejected", "5.1.1"),
        ("550-5.7.1 [192.0.2.1] blocked", "5.7.1"),
        ("421 4.7.0 [TSS04] deferred - 4.16.55.1; see https://example.com", "4.7.0"),
        ("mailbox unknown, code 550 5.1.1", "5.1.1"),
        ("rejected (5.1.1).", "5.1.1"),
        ("status 2.0.0.", "2.0.0"),  # a full stop ending the sentence is no part of it
        ("552 5.2.2 Mailbox full; 5.1.1 later", "5.2.2"),  # the first one
        ("deferred - 4.16.55.1", None),  # a Yahoo error code: "4.16.55" is no status
        ("see 10.2.4.5", None),  # nor is "2.4.5" a status inside an address-like number
        ("ip 192.5.1.1 refused", None),
        ("version 1.2.3", None),  # class 1 does not exist
        ("code 5.1.1234", None),
        ("v5.1.1 released", None),
        ("5.1", None),
        ("", None),
    ],
)
def test_the_enhanced_status_is_a_code_standing_alone(text: str, status: str | None) -> None:
    assert enhanced_status(text) == status


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        (1700000000, {}, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1700000000.5, {}, datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
        (None, {}, None),
        ("1700000000", {"digit_strings": True}, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (-1, {}, datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (
            1685543827372,
            {"milliseconds_from": 10**11},
            datetime(2023, 5, 31, 14, 37, 7, 372000, tzinfo=UTC),
        ),
        (1685543827, {"milliseconds_from": 10**11}, datetime(2023, 5, 31, 14, 37, 7, tzinfo=UTC)),
        (
            "1685543827372",
            {"milliseconds_from": 10**11, "digit_strings": True, "max_digits": 16},
            datetime(2023, 5, 31, 14, 37, 7, 372000, tzinfo=UTC),
        ),
        (
            1685543827372.0,
            {"milliseconds_from": 10**11},
            datetime(2023, 5, 31, 14, 37, 7, 372000, tzinfo=UTC),
        ),
    ],
)
def test_a_unix_time_is_read_as_each_provider_sends_it(
    value: Any, options: dict[str, Any], expected: datetime | None
) -> None:
    assert unix_time(value, "ts", **options) == expected


@pytest.mark.parametrize(
    ("value", "options", "reason"),
    [
        ("1700000000", {}, "field ts must be a Unix time in seconds, not a string"),
        (" 1700000000", {"digit_strings": True}, "field ts must be a Unix time in seconds"),
        ("1.5", {"digit_strings": True}, "field ts must be a Unix time in seconds"),
        ("\u0661", {"digit_strings": True}, "field ts must be a Unix time in seconds"),
        (True, {}, "field ts must be a Unix time in seconds, not a boolean"),
        ([1], {}, "field ts must be a Unix time in seconds, not an array"),
        (1.5, {"floats": False}, "field ts must be a Unix time in seconds, not a number"),
        (float("inf"), {}, "field ts must be a Unix time in seconds, not a number"),
        ("x", {"expected": "an integer Unix time"}, "field ts must be an integer Unix time, not"),
        ("x", {"name_type": False}, "field ts must be a Unix time in seconds"),
        (-1, {"since_1970": True}, "field ts is out of range"),
        (253402300800, {}, "field ts is out of range"),
        (10**30, {}, "field ts is out of range"),
        (1e300, {}, "field ts is out of range"),
        ("9" * 14, {"digit_strings": True}, "field ts is out of range"),
        ("9" * 5000, {"digit_strings": True}, "field ts is out of range"),
        (10**30, {"milliseconds_from": 10**11}, "field ts is out of range"),
    ],
)
def test_a_unix_time_of_another_type_or_out_of_range_is_refused(
    value: Any, options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PayloadError) as refused:
        unix_time(value, "ts", **options)
    assert refused.value.reason.startswith(reason)
    if options == {"name_type": False}:
        assert refused.value.reason == reason


def test_string_fields_and_type_names() -> None:
    data = JSON_DECODER.decode('{"s": "x", "e": "", "n": null, "i": 1, "o": {}}')
    assert [optional_string(data, f) for f in ("s", "e", "n", "absent")] == ["x", "", None, None]
    with pytest.raises(PayloadError, match="^field data.i must be a string, not a number$"):
        optional_string(data, "i", "data.i")
    check_strings(data, ("s", "e", "n", "absent"))
    with pytest.raises(PayloadError, match="^field o must be a string, not an object$"):
        check_strings(data, ("s", "o"))
    samples: tuple[object, ...] = (None, "", 1, [], data, True)
    assert [a(v) for v in samples] == [
        "null", "a string", "a number", "an array", "an object", "a boolean"
    ]  # fmt: skip
    assert [not_an_object(v).reason for v in (None, [1])] == [
        "an event is a JSON null, not an object",
        "an event is a JSON array, not an object",
    ]


def test_identity_and_metadata_text_are_compact_utf8_json() -> None:
    # One format for the providers added with these helpers; SendGrid and Mailgun keep theirs.
    values = ["<1@mail>", "bounce", 1700000000, "jos\u00e9@example.com", None, ("a", "b")]
    assert (
        identity_json(values)
        == '["<1@mail>","bounce",1700000000,"jos\u00e9@example.com",null,["a","b"]]'
    )
    assert compact_json(MappingProxyType({"a": [1, MappingProxyType({"b": "\u00e9"})]})) == (
        '{"a":[1,{"b":"\u00e9"}]}'
    )


# -- what the five providers added with these helpers read through them ----------------------

ADDRESS = "jos\u00e9@example.com"


def _bounces() -> dict[str, Any]:
    """One bounce per new provider, to a non-ASCII address, keyed without an event id."""
    resend = resend_event("hard", email=ADDRESS)
    resend["data"]["bounce"]["diagnosticCode"] = ["smtp; 550 rejected, see 10.2.4.5"]
    bodies: dict[str, tuple[Callable[[bytes], Parsed], bytes]] = {
        "mailjet": (parse_mailjet, dumps(mailjet_event("hard", email=ADDRESS))),
        "sparkpost": (parse_sparkpost, dumps([sparkpost_event("hard", email=ADDRESS)])),
        "brevo": (parse_brevo, dumps(brevo_event("hard", email=ADDRESS))),
        "resend": (parse_resend, dumps(resend)),  # without svix-id: a dedup_id
        "mandrill": (parse_mandrill, mandrill_body([mandrill_event("hard", email=ADDRESS)])),
    }
    return {name: parse(body).events[0] for name, (parse, body) in bodies.items()}


def test_the_new_providers_write_their_dedup_id_in_one_format() -> None:
    for provider, bounce in _bounces().items():
        identity = json.loads(bounce.dedup_id)
        assert bounce.dedup_id == identity_json(identity), provider  # compact, UTF-8
        if provider != "mandrill":  # Mandrill's key holds the message id, not the address
            assert ADDRESS in identity or [ADDRESS] in identity, provider


def test_the_new_providers_read_no_status_out_of_a_longer_dotted_number() -> None:
    assert _bounces()["resend"].smtp_status is None


@given(
    st.lists(
        st.one_of(
            st.text(),
            st.integers(),
            st.none(),
            st.booleans(),
            st.floats(allow_nan=False),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=5,
    )
)
def test_identity_and_compact_json_write_what_the_json_encoder_writes(values: list[Any]) -> None:
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    assert identity_json(values) == encoder.encode(values)
    for value in values:
        assert compact_json(value) == encoder.encode(value)
