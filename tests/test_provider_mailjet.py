"""Mailjet Event API bodies into Bounce objects, and the provider's construction.

Everything here calls the parser or the provider directly; requests through
the middleware are in ``test_provider_mailjet_http.py``, fuzzing in ``..._fuzz.py``.
The events are written here from the facts of providers.md ("Mailjet").
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bounce_middleware import BounceKind, BounceMiddleware, ConfigurationError, PayloadError
from bounce_middleware.errors import Unauthorized
from bounce_middleware.model import Bounce
from bounce_middleware.providers import Parsed, Provider
from bounce_middleware.providers.mailjet import Mailjet, parse_mailjet
from bounce_middleware.request import post
from bounce_middleware.samples.mailjet import (
    SAMPLE_KINDS,
    mailjet_batch,
    mailjet_body,
    mailjet_event,
    sample_request,
)
from bounce_middleware.testing import basic_auth_header
from tests.store_apps import downstream

CREDENTIALS = "mailjet:mailjet-unit-tests-password"
BIG_ID = 104427216766056450  # above 2^53: a double would make it ...448
# The table of providers.md ("Mailjet", Events -> kinds), written out independently
# of the provider's own: (event fields, kind; None = acknowledged).
MAPPING: list[tuple[dict[str, Any], str | None]] = [
    ({"event": "bounce", "hard_bounce": True, "error_related_to": "recipient"}, "hard"),
    ({"event": "bounce", "hard_bounce": True, "error": "user unknown"}, "hard"),
    ({"event": "bounce", "hard_bounce": False, "error_related_to": "domain"}, "soft"),
    ({"event": "bounce", "hard_bounce": False, "error": "greylisted"}, "soft"),
    ({"event": "bounce", "hard_bounce": False, "error": "quota exceeded"}, "soft"),
    ({"event": "bounce", "hard_bounce": False, "error_related_to": "system"}, "soft"),
    # Mailjet's table: system issues "never be permanent", greylisting is retried.
    ({"event": "bounce", "hard_bounce": True, "error_related_to": "system"}, "soft"),
    ({"event": "bounce", "error_related_to": "system", "error": "connection issue"}, "soft"),
    ({"event": "bounce", "hard_bounce": True, "error": "greylisted"}, "soft"),
    ({"event": "bounce", "error_related_to": "domain", "error": "greylisted"}, "soft"),
    # The spam class decides before the flag: the receiver refused the sender or content.
    ({"event": "bounce", "hard_bounce": True, "error_related_to": "spam"}, "blocked"),
    ({"event": "bounce", "hard_bounce": False, "error_related_to": "spam"}, "blocked"),
    ({"event": "bounce", "error_related_to": "Spam", "error": "content blocked"}, "blocked"),
    # Outside the table (a captured bounce): the flag decides.
    ({"event": "bounce", "hard_bounce": False, "error_related_to": "policy issue"}, "soft"),
    ({"event": "bounce", "hard_bounce": True, "error_related_to": "", "error": ""}, "hard"),
    ({"event": "bounce"}, "unknown"),  # Mailjet did not say whether it is permanent
    ({"event": "blocked", "error_related_to": "mailjet", "error": "preblocked"}, "suppressed"),
    ({"event": "blocked", "error_related_to": "recipient", "error": "blacklisted"}, "suppressed"),
    ({"event": "blocked", "error_related_to": "recipient", "error": "spam reporter"}, "suppressed"),
    ({"event": "blocked", "error_related_to": "recipient", "error": "user unknown"}, "suppressed"),
    ({"event": "blocked", "error_related_to": "domain", "error": "typofix"}, "suppressed"),
    ({"event": "blocked", "error_related_to": "recipient", "error": "something new"}, "suppressed"),
    ({"event": "blocked", "error_related_to": "mailjet", "error": ""}, "suppressed"),
    # Temporary in Mailjet's error table: the system class and greylisting.
    ({"event": "blocked", "error_related_to": "system", "error": "system issue"}, "soft"),
    ({"event": "blocked", "error_related_to": "system", "error": "protocol issue"}, "soft"),
    ({"event": "blocked", "error_related_to": "System", "error": "connection issue"}, "soft"),
    ({"event": "blocked", "error_related_to": "system", "error": "something new"}, "soft"),
    ({"event": "blocked", "error_related_to": "domain", "error": "greylisted"}, "soft"),
    ({"event": "blocked", "error": "Greylisted"}, "soft"),
    # The sender or the content as spam: not the address.
    ({"event": "blocked", "error_related_to": "spam", "error": "sender blocked"}, "blocked"),
    # No class, or one outside the table: not enough to flag the address.
    ({"event": "blocked", "error_related_to": "policy issue", "error": ""}, "unknown"),
    ({"event": "blocked", "error_related_to": "something new", "error": "odd"}, "unknown"),
    ({"event": "blocked"}, "unknown"),
    ({"event": "blocked", "error_related_to": "mailjet", "error": "duplicate in campaign"}, None),
    ({"event": "blocked", "error": "Duplicate in campaign"}, None),
    (
        {"event": "blocked", "error_related_to": "content", "error": "bad or empty template"},
        "error",
    ),
    (
        {"event": "blocked", "error_related_to": "content", "error": "error in template language"},
        "error",
    ),
    ({"event": "blocked", "error_related_to": "content", "error": "something new"}, "error"),
    ({"event": "spam", "source": "JMRPP"}, "complaint"),
    ({"event": "spam"}, "complaint"),
    ({"event": "unsub", "mj_list_id": 1}, "unsubscribe"),
    ({"event": "sent"}, None),
    ({"event": "open"}, None),
    ({"event": "click"}, None),
    ({"event": "something_new"}, None),
    ({"event": "BOUNCE", "hard_bounce": True}, "hard"),  # names compared case-insensitively
]

EVENT: dict[str, Any] = {
    "event": "bounce",
    "time": 1685525050,
    "MessageID": BIG_ID,
    "Message_GUID": "5577705c-024a-472d-8918-29ef81a64738",
    "email": "ann@example.com",
    "mj_campaign_id": 0,
    "mj_contact_id": 1000,
    "customcampaign": "",
    "blocked": False,
    "hard_bounce": False,
    "error_related_to": "recipient",
    "error": "quota exceeded",
    "comment": "452 4.2.2 Mailbox full, see 4.16.55.1",
    "CustomID": "order-42",
    "Payload": '{"user": 7}',
}


def one(body: bytes) -> Bounce:
    parsed = parse_mailjet(body)
    assert (parsed.acknowledged, parsed.rejected, parsed.handshake) == ((), (), "")
    [bounce] = parsed.events
    return bounce


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


# -- kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "kind"), MAPPING)
def test_every_row_of_the_table_alone_and_grouped(fields: dict[str, Any], kind: str | None) -> None:
    event = {"email": "ann@example.com", "time": 1430812195, "MessageID": 1, **fields}
    for body in (dumps(event), dumps([event])):
        parsed = parse_mailjet(body)
        assert parsed.rejected == ()
        if kind is None:
            assert parsed.events == () and len(parsed.acknowledged) == 1
        else:
            [bounce] = parsed.events
            assert (bounce.kind, bounce.type) == (BounceKind(kind), fields["event"].lower())


def test_acknowledged_names_say_what_was_not_dispatched() -> None:
    events = [
        {"event": "sent"},
        {"event": "open"},
        {"event": "blocked", "error": "duplicate in campaign"},
    ]
    assert parse_mailjet(dumps(events)).acknowledged == ("sent", "open", "duplicate_in_campaign")
    assert parse_mailjet(dumps({"event": "click"})) == Parsed(acknowledged=("click",))


def test_an_acknowledged_event_is_never_refused_for_fields_it_does_not_need() -> None:
    # A sent event's fields are not read: odd types there refuse nothing.
    sent = {"event": "sent", "email": 7, "time": "now", "MessageID": 1.5, "error": 3}
    assert parse_mailjet(dumps(sent)).acknowledged == ("sent",)


def test_blocked_true_on_a_bounce_is_said_in_the_description() -> None:
    hard = one(dumps(EVENT | {"hard_bounce": True, "blocked": True}))
    assert hard.kind is BounceKind.HARD
    assert hard.description.endswith("Mailjet now blocks this address")
    soft = one(dumps(EVENT | {"blocked": True}))
    assert soft.kind is BounceKind.SOFT and "now blocks" in soft.description
    assert "now blocks" not in one(dumps(EVENT)).description
    assert "now blocks" not in one(dumps(EVENT | {"blocked": None})).description


# -- fields ---------------------------------------------------------------------------------


def test_the_fields_of_a_bounce() -> None:
    bounce = one(dumps(EVENT | {"customcampaign": "spring sale"}))
    assert bounce.provider == "mailjet" and bounce.id is None
    assert bounce.email == "ann@example.com"
    assert bounce.type == "bounce"
    assert bounce.bounced_at == datetime(2023, 5, 31, 9, 24, 10, tzinfo=UTC)
    assert bounce.message_id == "104427216766056450"
    assert bounce.details == "452 4.2.2 Mailbox full, see 4.16.55.1"
    assert bounce.smtp_status == "4.2.2"
    assert bounce.tags == ("spring sale",)
    assert dict(bounce.metadata) == {"CustomID": "order-42", "Payload": '{"user": 7}'}
    assert bounce.raw["MessageID"] == BIG_ID and bounce.raw["mj_contact_id"] == 1000
    assert bounce.description == "The receiving server refused the message for now"
    assert not bounce.permanent


@pytest.mark.parametrize(
    "message_id",
    [BIG_ID, 2**53 + 1, 2**63 - 1, 2**63 + 1, 2**64 + 5, 18446744073709551617123, 0, -1],
)
def test_64_bit_message_ids_are_kept_exact_never_through_a_float(message_id: int) -> None:
    body = b'{"event":"bounce","hard_bounce":true,"email":"a@example.com","MessageID":%d}' % (
        message_id
    )
    for bounce in (one(body), one(b"[" + body + b"]")):
        assert bounce.message_id == str(message_id)
        assert type(bounce.raw["MessageID"]) is int and bounce.raw["MessageID"] == message_id
        assert str(message_id).encode() in bounce.body  # written back as the same digits
        assert json.loads(bounce.dedup_id or "")[0] == str(message_id)


def test_two_ids_a_double_cannot_tell_apart_are_two_events() -> None:
    assert float(BIG_ID) == float(BIG_ID + 1)
    first = one(dumps(EVENT))
    second = one(dumps(EVENT | {"MessageID": BIG_ID + 1}))
    assert first.message_id != second.message_id and first.key != second.key


@pytest.mark.parametrize(
    ("fields", "message_id"),
    [
        ({"MessageID": "19421777835146490"}, "19421777835146490"),
        ({"MessageID": None, "mj_message_id": "19421777835146490"}, "19421777835146490"),
        ({"MessageID": None, "Message_GUID": "1ab23cd4-e567"}, "1ab23cd4-e567"),
        ({"MessageID": "", "mj_message_id": "", "Message_GUID": "g"}, "g"),
        ({"MessageID": None, "mj_message_id": "7", "Message_GUID": "g"}, "7"),
        ({"MessageID": None, "Message_GUID": None}, None),
        ({"MessageID": None, "Message_GUID": ""}, None),
    ],
)
def test_without_a_message_id_the_deprecated_string_then_the_guid(
    fields: dict[str, Any], message_id: str | None
) -> None:
    bounce = one(dumps(EVENT | fields))
    assert bounce.message_id == message_id
    assert json.loads(bounce.dedup_id or "")[0] == message_id


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"MessageID": 1.5}, "field MessageID must be an integer, not a number"),
        ({"MessageID": 1.0444e17}, "field MessageID must be an integer"),
        ({"MessageID": True}, "field MessageID must be an integer, not a boolean"),
        ({"MessageID": None, "Message_GUID": 5}, "field Message_GUID must be a string"),
        ({"MessageID": None, "mj_message_id": []}, "field mj_message_id must be a string"),
        ({"time": 1685525050.5}, "field time must be an integer Unix time, not a number"),
        ({"time": "1685525050"}, "field time must be an integer Unix time, not a string"),
        ({"time": True}, "field time must be an integer Unix time, not a boolean"),
        ({"time": -1}, "field time is out of range"),
        ({"time": 253402300800}, "field time is out of range"),
        ({"time": 10**30}, "field time is out of range"),
        ({"email": ""}, "required field email is missing or empty"),
        ({"email": None}, "required field email is missing or empty"),
        ({"email": ["a@example.com"]}, "field email must be a string, not an array"),
        ({"error": 5}, "field error must be a string, not a number"),
        ({"hard_bounce": "true"}, "field hard_bounce must be a boolean, not a string"),
        ({"blocked": 1}, "field blocked must be a boolean, not a number"),
        ({"event": None}, "required field event is missing"),
        ({"event": 3}, "field event must be a string, not a number"),
    ],
)
def test_a_malformed_event_alone_is_400_and_in_a_batch_refused_alone(
    fields: dict[str, Any], reason: str
) -> None:
    bad = EVENT | fields
    with pytest.raises(PayloadError) as caught:
        parse_mailjet(dumps(bad))
    assert caught.value.reason.startswith(reason)
    good = EVENT | {"email": "bob@example.com"}
    parsed = parse_mailjet(dumps([good, bad]))
    assert [b.email for b in parsed.events] == ["bob@example.com"]
    [rejection] = parsed.rejected
    assert rejection.reason.startswith(reason)
    assert json.loads(rejection.body) == [bad]
    # replay refuses it again, for the same reason
    assert parse_mailjet(rejection.body).rejected == (rejection,)


def test_the_time_bounds_are_accepted() -> None:
    assert one(dumps(EVENT | {"time": 0})).bounced_at == datetime(1970, 1, 1, tzinfo=UTC)
    last = one(dumps(EVENT | {"time": 253402300799})).bounced_at
    assert last == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert one(dumps(EVENT | {"time": None})).bounced_at is None


def test_details_come_from_the_comment_then_the_error_then_its_class_then_the_source() -> None:
    assert one(dumps(EVENT | {"comment": ""})).details == "quota exceeded"
    assert one(dumps(EVENT | {"comment": None, "error": ""})).details == "recipient"
    spam = {"event": "spam", "email": "a@example.com", "source": "JMRPP"}
    assert one(dumps(spam)).details == "JMRPP"
    assert one(dumps({"event": "unsub", "email": "a@example.com"})).details == ""


@pytest.mark.parametrize(
    ("comment", "status"),
    [
        ("550 5.1.1 User unknown", "5.1.1"),
        ("421 4.7.0 [TSS04] deferred - 4.16.55.1; see https://example.com", "4.7.0"),
        ("deferred - 4.16.55.1", None),  # a Yahoo error code, not a status
        ("version 1.2.3", None),
        ("", None),
    ],
)
def test_the_smtp_status_is_the_enhanced_code_in_the_comment(
    comment: str, status: str | None
) -> None:
    assert one(dumps(EVENT | {"comment": comment})).smtp_status == status


@pytest.mark.parametrize("fields", [{"comment": {}}, {"comment": 550}, {"source": ["JMRPP"]}])
def test_a_comment_or_source_of_another_type_is_left_in_raw_and_refuses_nothing(
    fields: dict[str, Any],
) -> None:
    # They only describe the event, as other providers' diagnostics do: the bounce counts.
    base = EVENT | {"comment": None}
    for event in (base | fields, base | {"event": "spam"} | fields):
        for bounce in (one(dumps(event)), one(dumps([event]))):
            assert bounce.kind in (BounceKind.SOFT, BounceKind.COMPLAINT)
            assert bounce.details == "quota exceeded" and bounce.smtp_status is None
            [(name, value)] = fields.items()
            assert bounce.raw[name] == (tuple(value) if type(value) is list else value)


def test_tags_and_metadata_are_what_the_sender_attached_and_odd_types_stay_in_raw() -> None:
    bounce = one(dumps(EVENT | {"customcampaign": 5, "CustomID": 42, "Payload": ""}))
    assert bounce.tags == () and dict(bounce.metadata) == {}
    assert bounce.raw["CustomID"] == 42


# -- de-duplication and replay --------------------------------------------------------------


def test_the_dedup_key_is_message_id_event_time_and_email_and_holds_no_address() -> None:
    bounce = one(dumps(EVENT))
    assert bounce.dedup_id == f'["{BIG_ID}","bounce",1685525050,"ann@example.com"]'
    digest = hashlib.sha256(bounce.dedup_id.encode()).hexdigest()
    assert bounce.key == f"mailjet:dedup-sha256:{digest}"
    assert "ann" not in bounce.key


def test_the_same_event_alone_or_grouped_has_the_same_key_and_others_do_not() -> None:
    alone = one(dumps(EVENT))
    [grouped] = parse_mailjet(dumps([EVENT | {"Payload": "changed"}])).events
    assert grouped.key == alone.key
    changes: list[dict[str, Any]] = [
        {"time": 1685525051},
        {"email": "bob@example.com"},
        {"event": "spam"},
        {"MessageID": BIG_ID + 2},
    ]
    for change in changes:
        assert one(dumps(EVENT | change)).key != alone.key


def test_one_event_has_one_key_however_its_message_id_is_written_alone_or_grouped() -> None:
    # Mailjet's single-event samples carry the number MessageID; its grouped sample only
    # the deprecated string mj_message_id: the same event must not be applied twice.
    event = {
        "event": "bounce",
        "time": 1430812195,
        "email": "ann@example.com",
        "hard_bounce": True,
        "error_related_to": "recipient",
        "error": "user unknown",
    }
    spellings: list[dict[str, Any]] = [
        {"MessageID": 13792286917004336},
        {"MessageID": "13792286917004336"},
        {"mj_message_id": "13792286917004336"},
        {"MessageID": None, "mj_message_id": "13792286917004336"},
        {"MessageID": 13792286917004336, "mj_message_id": "13792286917004336"},
        {"MessageID": 13792286917004336, "Message_GUID": "1ab23cd4-e567-8901"},
    ]
    keys = set()
    for spelling in spellings:
        for body in (dumps(event | spelling), dumps([event | spelling])):
            bounce = one(body)
            assert bounce.message_id == "13792286917004336"
            keys.add(bounce.key)
    assert len(keys) == 1
    # The GUID counts only without either: another id, another key.
    assert one(dumps(event | {"Message_GUID": "1ab23cd4-e567-8901"})).key not in keys


def test_each_bounce_keeps_its_event_alone_which_parses_again_to_the_same_event() -> None:
    batch = mailjet_batch("hard", "open", "complaint", "unsubscribe")
    parsed = parse_mailjet(mailjet_body(batch))
    assert len(parsed.events) == 3 and parsed.acknowledged == ("open",)
    for bounce, event in zip(parsed.events, [batch[0], batch[2], batch[3]], strict=True):
        assert json.loads(bounce.body) == [event]
        assert parse_mailjet(bounce.body).events == (bounce,)
        assert bounce.raw == event


# -- bodies ---------------------------------------------------------------------------------


def test_an_empty_grouped_batch_is_a_handshake() -> None:
    assert parse_mailjet(b"[]") == Parsed(handshake="empty batch: no events")
    assert parse_mailjet(b" [ ]\n").handshake


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is empty; Mailjet posts a JSON object or a JSON array of events"),
        (b" \r\n", "body is empty"),
        (b"\xef\xbb\xbf", "body is empty"),
        (b'"bounce"', "body is a JSON string; expected an object"),
        (b"42", "body is a JSON number; expected an object"),
        (b"null", "body is JSON null; expected an object"),
        (b'{"event": "bounce",}', "body is not valid JSON"),
        (b"[{]", "body is not valid JSON"),
        (b'{"event": "bounce", "time": NaN}', "body is not valid JSON (NaN is not allowed)"),
        (b'[{"event": "bounce"}] x', "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not UTF-8 encoded JSON"),
        (b'{"event": "bounce", "email": "\\ud800"}', "body holds an unpaired UTF-16 surrogate"),
        (b"[" * 100_000, "body is nested too deeply"),
        (b'{"a":' * 100_000, "body is nested too deeply"),
        (b'{"event": "bounce", "MessageID": 1' + b"0" * 5000 + b"}", "body holds an integer"),
    ],
)
def test_bodies_that_can_never_be_events_are_refused_with_one_line(
    body: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_mailjet(body)
    assert caught.value.reason.startswith(reason)
    assert "\n" not in caught.value.reason


def test_the_current_docs_bounce_sample_missing_a_comma_is_refused() -> None:
    # Mailjet's guide shows this bounce without the comma before "comment" (providers.md).
    body = (
        b'{"event": "bounce", "time": 1430812195, "MessageID": 13792286917004336,'
        b' "email": "bounce@example.com", "hard_bounce": true, "error_related_to": "recipient",'
        b' "error": "user unknown"\n "comment": "Host or domain name not found"}'
    )
    with pytest.raises(PayloadError, match="body is not valid JSON"):
        parse_mailjet(body)


def test_a_bom_and_blank_lines_before_the_body_are_accepted() -> None:
    assert one(b"\xef\xbb\xbf\n" + dumps(EVENT)).message_id == str(BIG_ID)
    assert one(b"\r\n" + dumps([EVENT])).message_id == str(BIG_ID)


def test_items_of_a_grouped_batch_that_are_no_objects_are_refused_alone() -> None:
    parsed = parse_mailjet(dumps([EVENT, 5, None, [EVENT], "bounce"]))
    assert len(parsed.events) == 1
    assert [r.reason for r in parsed.rejected] == [
        "an event is a JSON number, not an object",
        "an event is a JSON null, not an object",
        "an event is a JSON array, not an object",
        "an event is a JSON string, not an object",
    ]


def test_a_lone_surrogate_in_one_event_of_a_batch_refuses_that_event_alone() -> None:
    body = b'[{"event":"spam","email":"\\udc00@example.com"},' + dumps(EVENT) + b"]"
    parsed = parse_mailjet(body)
    assert len(parsed.events) == 1
    [rejection] = parsed.rejected
    assert rejection.reason == "event holds an unpaired UTF-16 surrogate escape"
    assert parse_mailjet(rejection.body).rejected == (rejection,)


# -- samples --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_every_sample_kind_parses_to_its_kind(kind: str) -> None:
    headers, body = sample_request(kind, email="ann@example.com")
    assert headers == {"Content-Type": "application/json"}
    parsed = parse_mailjet(body)
    if kind in ("sent", "open", "click"):
        assert parsed.acknowledged == (kind,)
    else:
        [bounce] = parsed.events
        assert (bounce.kind, bounce.email) == (BounceKind(kind), "ann@example.com")


def test_samples_have_new_message_ids_above_2_53_and_take_overrides() -> None:
    first, second = mailjet_event(), mailjet_event()
    assert first["MessageID"] != second["MessageID"] and first["MessageID"] > 2**53
    event = mailjet_event("soft", CustomID="order-7", Payload=None, email="bob@example.com")
    assert event["CustomID"] == "order-7" and "Payload" not in event
    assert event["email"] == "bob@example.com"
    with pytest.raises(ValueError, match="unknown Mailjet sample 'nope'"):
        mailjet_event("nope")
    with pytest.raises(ValueError, match="Mailjet signs nothing"):
        sample_request("hard", email="a@example.com", secret="s3cret")


# -- the provider ---------------------------------------------------------------------------


def test_it_keeps_the_provider_protocol() -> None:
    provider = Mailjet(credentials=[CREDENTIALS])
    assert isinstance(provider, Provider)
    assert (provider.name, provider.methods, provider.refuse_status, provider.retry_status) == (
        "mailjet",
        frozenset({"POST"}),
        400,
        None,
    )
    assert dict(Mailjet.options) == {"credentials": "credentials", "realm": "str"}
    body = dumps(EVENT)
    request = post(
        "/hooks/mailjet", body, {"Authorization": basic_auth_header(*CREDENTIALS.split(":"))}
    )
    provider.check_headers(request)
    provider.authenticate(request)
    assert provider.parse(request) == parse_mailjet(body)


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (None, "Mailjet: credentials is None"),
        ([], "no credentials configured"),
        ("", "no credentials configured"),
        (["no-colon"], 'must be "user:password"'),
        ([("mailjet", "pw")], 'not a "user:password" string'),
    ],
)
def test_it_fails_closed_without_usable_credentials(credentials: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Mailjet(credentials=credentials)


def test_a_realm_with_a_quote_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="realm"):
        Mailjet(credentials=[CREDENTIALS], realm='a"b')


@pytest.mark.parametrize(
    "authorization",
    [None, basic_auth_header("mailjet", "wrong"), "Bearer mailjet-unit-tests-password", "Basic !"],
)
def test_missing_or_wrong_credentials_are_refused_with_the_challenge_without_a_body(
    authorization: str | None,
) -> None:
    provider = Mailjet(credentials=[CREDENTIALS], realm="hooks")
    headers = {} if authorization is None else {"Authorization": authorization}
    for check in (provider.check_headers, provider.authenticate):
        with pytest.raises(Unauthorized) as caught:
            check(post("/hooks/mailjet", b"", headers))
        assert caught.value.challenge == 'Basic realm="hooks", charset="UTF-8"'


def test_either_of_two_credentials_is_accepted_while_rotating() -> None:
    provider = Mailjet(credentials=[CREDENTIALS, "mailjet:the-next-long-password"])
    for password in ("mailjet-unit-tests-password", "the-next-long-password"):
        provider.authenticate(
            post("/", b"", {"Authorization": basic_auth_header("mailjet", password)})
        )


def test_built_from_flat_settings_by_its_dotted_name() -> None:
    app = BounceMiddleware.from_settings(
        downstream,
        {
            "bounce.routes": "/hooks/mailjet bounce_middleware.providers.mailjet.Mailjet",
            "bounce.mailjet.credentials": f"{CREDENTIALS} mailjet:the-next-long-password",
            "bounce.mailjet.realm": "mailjet hooks",
        },
    )
    provider = app.routes["/hooks/mailjet"]
    assert isinstance(provider, Mailjet) and provider.basic.realm == "mailjet hooks"


def test_a_route_without_credentials_is_refused_by_the_settings() -> None:
    with pytest.raises(ConfigurationError, match="needs setting 'bounce.mailjet.credentials'"):
        BounceMiddleware.from_settings(
            downstream,
            {"bounce.routes": "/hooks/mailjet bounce_middleware.providers.mailjet.Mailjet"},
        )
