"""Mandrill: the event -> kind table, the fields of a Bounce, de-duplication keys, malformed events.

Events are built from the facts of providers.md ("Mandrill") by the helpers of
``tests/test_provider_mandrill.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from bounce_middleware import BounceKind, PayloadError
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.mandrill import INBOUND_REASON, parse_mandrill
from tests.test_provider_mandrill import events_json, message_event, parse, sync_event


def form_fields(body: bytes) -> list[tuple[str, str]]:
    """A form body as the standard library reads it."""
    return parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True, errors="strict")


# -- events -> kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("hard_bounce", BounceKind.HARD),
        ("soft_bounce", BounceKind.SOFT),
        ("deferral", BounceKind.SOFT),
        ("spam", BounceKind.COMPLAINT),
        ("unsub", BounceKind.UNSUBSCRIBE),
        ("reject", BounceKind.SUPPRESSED),
        ("Hard_Bounce", BounceKind.HARD),
    ],
)
def test_message_events_map_to_kinds(event: str, kind: BounceKind) -> None:
    [bounce] = parse(message_event(event)).events
    assert (bounce.kind, bounce.type, bounce.provider) == (kind, event.lower(), "mandrill")


@pytest.mark.parametrize("event", ["send", "delivered", "open", "click", "a_new_event"])
def test_other_message_events_are_acknowledged(event: str) -> None:
    assert parse(message_event(event)) == Parsed(acknowledged=(event,))


def test_an_acknowledged_event_needs_none_of_a_bounces_fields() -> None:
    assert parse({"event": "open"}).acknowledged == ("open",)


@pytest.mark.parametrize(
    ("list_name", "action"), [("blacklist", "add"), ("blacklist", "change"), ("denylist", "add")]
)
def test_an_address_added_to_the_denylist_is_suppressed(list_name: str, action: str) -> None:
    [bounce] = parse(sync_event(list_name, action)).events
    assert (bounce.kind, bounce.type, bounce.email) == (
        BounceKind.SUPPRESSED,
        list_name,
        "bob@example.com",
    )
    assert bounce.message_id is None
    assert bounce.details == " smtp;550 5.1.1 mailbox unknown"
    assert bounce.smtp_status == "5.1.1"
    assert bounce.bounced_at == datetime.fromtimestamp(1700000100, UTC)


def test_a_manual_denylist_entry_without_a_note_gives_its_reason() -> None:
    [bounce] = parse(sync_event(reject={"detail": "", "reason": "custom"})).events
    assert (bounce.details, bounce.smtp_status) == ("custom", None)


@pytest.mark.parametrize(
    ("event", "name"),
    [
        (sync_event("blacklist", "remove"), "blacklist_remove"),
        (sync_event("whitelist", "add"), "whitelist_add"),
        (sync_event("whitelist", "remove"), "whitelist_remove"),
        ({"type": "whitelist"}, "whitelist"),
    ],
)
def test_other_sync_events_are_acknowledged(event: dict[str, Any], name: str) -> None:
    assert parse(event).acknowledged == (name,)


def test_an_inbound_message_is_refused_alone_as_misrouted() -> None:
    inbound = {"event": "inbound", "msg": {"raw_msg": "From: a@example.com\n\nhi"}, "ts": 1}
    parsed = parse(message_event(), inbound)
    assert len(parsed.events) == 1
    [rejection] = parsed.rejected
    assert rejection.reason == INBOUND_REASON == "inbound message on a tracking webhook: misrouted"
    assert form_fields(rejection.body) == [("mandrill_events", events_json(inbound))]
    assert parse_mandrill(rejection.body).rejected == (rejection,)  # replay refuses it again


# -- fields ---------------------------------------------------------------------------------


def test_a_hard_bounce_reads_every_field() -> None:
    event = message_event(msg={"metadata": {"user_id": "17", "plan": 2, "flags": [1, "a"]}})
    [bounce] = parse(event).events
    assert bounce.email == "ann@example.com"
    assert bounce.bounced_at == datetime.fromtimestamp(1700000060, UTC)
    assert bounce.message_id == "0123456789abcdef0123456789abcdef"
    assert bounce.description == "The receiving server rejected the message permanently"
    assert (bounce.details, bounce.smtp_status) == ("smtp;550 5.1.1 mailbox unknown", "5.1.1")
    assert bounce.tags == ("orders",)
    assert dict(bounce.metadata) == {"user_id": "17", "plan": "2", "flags": '[1,"a"]'}
    assert bounce.raw["msg"]["bgtools_code"] == 10
    assert isinstance(bounce.raw["msg"]["tags"], tuple)  # read-only all the way down
    assert form_fields(bounce.body) == [("mandrill_events", events_json(event))]
    assert b'"event":"hard_bounce"' in bounce.body  # escaped only where a form needs it


@pytest.mark.parametrize(
    ("msg", "details", "status"),
    [
        ({"diag": None, "bounce_description": "mailbox_full"}, "mailbox_full", None),
        (
            {
                "diag": None,
                "smtp_events": [
                    {"diag": "421 4.7.0 try later", "ts": 1},
                    {"diag": "451 4.3.5 Temporarily unavailable", "ts": 2},
                ],
            },
            "451 4.3.5 Temporarily unavailable",
            "4.3.5",
        ),
        ({"diag": None, "bounce_description": None, "smtp_events": None}, "", None),
        ({"diag": 550, "bounce_description": None, "smtp_events": [3]}, "", None),
        ({"diag": "550-5.1.1 unknown user"}, "550-5.1.1 unknown user", "5.1.1"),
        # The enhanced code standing alone anywhere in the reply (the providers' one reading),
        # never a part of a longer dotted number.
        ({"diag": "mailbox unknown, code 550 5.1.1"}, "mailbox unknown, code 550 5.1.1", "5.1.1"),
        ({"diag": "550 rejected, see 10.5.1.1"}, "550 rejected, see 10.5.1.1", None),
        ({"diag": "421 deferred - 4.16.55.1"}, "421 deferred - 4.16.55.1", None),
    ],
)
def test_details_come_from_diag_then_the_last_smtp_event_then_the_bounce_description(
    msg: dict[str, Any], details: str, status: str | None
) -> None:
    [bounce] = parse(message_event("deferral", msg=msg)).events
    assert (bounce.details, bounce.smtp_status) == (details, status)


@pytest.mark.parametrize(
    ("msg", "tags", "metadata"),
    [
        ({"tags": None, "metadata": None}, (), {}),
        ({"tags": [], "metadata": []}, (), {}),  # PHP writes an empty map as []
        ({"tags": ["a", 1, None, "b"], "metadata": {"n": None}}, ("a", "b"), {"n": "null"}),
        ({"tags": "not-a-list", "metadata": "x"}, (), {}),
    ],
)
def test_tags_and_metadata_take_what_is_usable(
    msg: dict[str, Any], tags: tuple[str, ...], metadata: dict[str, str]
) -> None:
    [bounce] = parse(message_event(msg=msg)).events
    assert (bounce.tags, dict(bounce.metadata)) == (tags, metadata)


def test_the_message_id_falls_back_to_msg_id() -> None:
    [bounce] = parse(message_event(_id=None)).events
    assert bounce.message_id == "0123456789abcdef0123456789abcdef"


# -- de-duplication -------------------------------------------------------------------------


def test_the_dedup_key_is_the_message_id_event_and_time() -> None:
    [bounce] = parse(message_event()).events
    assert json.loads(bounce.dedup_id or "") == [
        "0123456789abcdef0123456789abcdef",
        "hard_bounce",
        1700000060,
    ]
    again = parse(message_event(msg={"diag": "another text", "tags": ["x"]}))
    assert again.events[0].key == bounce.key  # a retry is the same event


def test_a_messages_events_and_its_repeated_deferrals_have_their_own_keys() -> None:
    parsed = parse(
        message_event("deferral"),
        message_event("deferral", ts=1700003660),
        message_event("hard_bounce"),
        message_event("hard_bounce", _id="another-message", msg={"_id": "another-message"}),
    )
    assert len({bounce.key for bounce in parsed.events}) == 4


def test_without_any_message_id_the_address_identifies_the_event() -> None:
    first, second = parse(
        message_event(_id=None, msg={"_id": None}),
        message_event(_id=None, msg={"_id": None, "email": "bob@example.com"}),
    ).events
    assert json.loads(first.dedup_id or "") == [None, "hard_bounce", 1700000060, "ann@example.com"]
    assert first.key != second.key and first.message_id is None


def test_a_sync_events_key_holds_its_list_action_time_and_address() -> None:
    added, changed = parse(sync_event(), sync_event(action="change")).events
    assert json.loads(added.dedup_id or "") == ["blacklist", "add", 1700000100, "bob@example.com"]
    assert added.key != changed.key
    assert "bob@example.com" not in added.key  # keys are logged: only a digest


def test_every_bounce_body_parses_again_to_the_same_event() -> None:
    parsed = parse(message_event("deferral"), sync_event(), message_event("spam", ts=1.5))
    for bounce in parsed.events:
        again = parse_mandrill(bounce.body).events
        assert again == (bounce,) and again[0].key == bounce.key


# -- malformed bodies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "form has no mandrill_events field"),
        (b"other=1", "form has no mandrill_events field"),
        (b"mandrill_events=", "body is empty; Mandrill posts a JSON array of events"),
        (b"mandrill_events=GARBAGE", "body is not valid JSON"),
        (b"mandrill_events=%7B%7D", "body is a JSON object; Mandrill posts a JSON array"),
        (b"mandrill_events=NaN", "NaN is not allowed"),
        (b"mandrill_events=%C3%28", "body is not a UTF-8 form"),
        (b"mandrill_events", "body is not a form"),
    ],
)
def test_bodies_that_are_no_batch_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_mandrill(body)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([1], "an event is a JSON array, not an object"),
        ({"msg": {}}, "an event has neither an event nor a type field"),
        ({"event": 7}, "field event must be a string, not a number"),
        ({"type": ["blacklist"]}, "field type must be a string, not an array"),
        ({"type": "blacklist", "action": 1}, "field action must be a string"),
        (message_event(msg=None), "required field msg is missing or not an object"),
        (message_event(msg={"email": ""}), "required field msg.email is missing or empty"),
        (message_event(msg={"email": " "}), "required field msg.email is missing or empty"),
        (message_event(msg={"email": ["a"]}), "field msg.email must be a string"),
        (message_event(_id=12), "field _id must be a string, not a number"),
        (message_event(ts=None), "required field ts is missing"),
        (message_event(ts="1700000000"), "field ts must be a Unix time in seconds"),
        (message_event(ts=True), "field ts must be a Unix time in seconds"),
        (message_event(ts=10**20), "field ts is out of range"),
        (sync_event(reject=None), "required field reject is missing or not an object"),
        (sync_event(reject={"email": None}), "required field reject.email is missing or empty"),
        (sync_event(ts=None), "required field ts is missing"),
    ],
)
def test_a_malformed_event_is_refused_alone(event: Any, reason: str) -> None:
    good = message_event(_id="good", msg={"_id": "good"})
    parsed = parse(good, event)
    assert [b.message_id for b in parsed.events] == ["good"]
    [rejection] = parsed.rejected
    assert reason in rejection.reason
    assert parse_mandrill(rejection.body).rejected == (rejection,)


def test_an_event_with_a_lone_surrogate_is_refused_alone_and_kept_as_received() -> None:
    value = '[{"event":"hard_bounce","msg":{"email":"a@example.com","diag":"\\ud800"},"ts":1}]'
    parsed = parse_mandrill(urlencode({"mandrill_events": value}).encode())
    [rejection] = parsed.rejected
    assert "surrogate" in rejection.reason
    assert parse_mandrill(rejection.body).rejected == (rejection,)
