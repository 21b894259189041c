"""Resend: the event -> kind table, the fields of a Bounce, de-duplication and the replay envelope.

Bodies are written here from the facts of providers.md ("Resend") and signed with
the recipe written out below (hmac directly), not with the library's signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bounce_middleware import PayloadError
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.resend import Resend
from bounce_middleware.request import post

NOW = 1_700_000_000.0
# A whsec_ secret made for these tests: base64 of 24 known bytes.
KEY = b"resend-test-key-24-bytes"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = "msg_2bTJzWmTZ8Vb1dJ0mGQyQ9vRkEl"

# The published Svix vector (svix-webhooks python/tests/test_webhooks.py; providers.md §7).
PUBLISHED_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PUBLISHED_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
PUBLISHED_TS = "1614265330"
PUBLISHED_BODY = b'{"test": 2432232314}'
PUBLISHED_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def recipe(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def event(kind: str = "email.bounced", /, **data: Any) -> dict[str, Any]:
    """A Resend event as its docs show one; ``data`` fields replace the defaults."""
    fields: dict[str, Any] = {
        "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
        "created_at": "2024-11-22T23:41:11.894719+00:00",
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Acme <onboarding@example.com>",
        "to": ["ann@example.com"],
        "subject": "Your order",
        "tags": {"category": "orders"},
    }
    if kind == "email.bounced":
        fields["bounce"] = {
            "message": "The recipient's email provider sent a hard bounce message.",
            "subType": "General",
            "type": "Permanent",
        }
    fields.update(data)
    return {"type": kind, "created_at": "2024-11-22T23:41:12.126Z", "data": fields}


def headers_for(body: bytes, *, msg_id: str = MSG_ID, timestamp: float = NOW) -> dict[str, str]:
    stamp = str(int(timestamp))
    return {
        "Content-Type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": stamp,
        "svix-signature": recipe(KEY, msg_id, stamp, body),
    }


def provider(**options: Any) -> Resend:
    options.setdefault("secret", SECRET)
    options.setdefault("clock", lambda: NOW)
    return Resend(**options)


def parse(data: object, *, msg_id: str | None = MSG_ID) -> Parsed:
    body = json.dumps(data).encode()
    return provider().parse(post(body=body, headers={"svix-id": msg_id} if msg_id else {}))


def bounce_of(data: object, **kwargs: Any) -> Any:
    [bounce] = parse(data, **kwargs).events
    return bounce


def authenticate(body: bytes, headers: dict[str, str], **options: Any) -> None:
    request = post(body=body, headers=headers)
    resend = provider(**options)
    resend.check_headers(request)
    resend.authenticate(request)


# -- kinds --------------------------------------------------------------------------------------


def bounced(bounce_type: str, sub_type: str, message: str = "It bounced.") -> dict[str, Any]:
    return event(bounce={"type": bounce_type, "subType": sub_type, "message": message})


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (bounced("Permanent", "General"), "hard"),
        (bounced("Permanent", "NoEmail"), "hard"),
        (bounced("Permanent", "UnsubscribedRecipient"), "hard"),
        (bounced("Permanent", "Suppressed"), "suppressed"),
        (bounced("Permanent", "OnAccountSuppressionList"), "suppressed"),
        (
            bounced("Permanent", "General", "Resend has suppressed sending to this address."),
            "suppressed",
        ),
        (bounced("Transient", "General"), "soft"),
        (bounced("Transient", "MailboxFull"), "soft"),
        (bounced("Undetermined", "Undetermined"), "unknown"),
        (bounced("Sideways", "General"), "unknown"),
        (event(bounce={"type": "Permanent", "subType": {}, "message": []}), "hard"),
        (event(bounce={"type": ["Permanent"], "subType": "General"}), "unknown"),
        (event(bounce="Permanent"), "unknown"),
        (event(bounce=None), "unknown"),
        (event("email.delivery_delayed"), "soft"),
        (event("email.complained"), "complaint"),
        (event("email.suppressed"), "suppressed"),
        (event("email.failed", failed={"reason": "reached_daily_quota"}), "error"),
    ],
)
def test_dispatched_events_and_their_kind(data: dict[str, Any], kind: str) -> None:
    bounce = bounce_of(data)
    assert bounce.kind == kind
    assert bounce.type == data["type"]
    assert bounce.email == "ann@example.com"


@pytest.mark.parametrize(
    "name",
    [
        "email.sent",
        "email.delivered",
        "email.opened",
        "email.clicked",
        "email.scheduled",
        "email.received",
        "contact.created",
        "contact.updated",
        "contact.deleted",
        "domain.created",
        "domain.updated",
        "domain.deleted",
        "email.something_new",
    ],
)
def test_other_events_are_acknowledged_without_reading_their_data(name: str) -> None:
    assert parse({"type": name, "created_at": 5, "data": ["anything"]}) == Parsed(
        acknowledged=(name,)
    )


def test_a_delay_is_said_to_be_non_final() -> None:
    bounce = bounce_of(event("email.delivery_delayed"))
    assert "not final" in bounce.description and not bounce.permanent


# -- fields ---------------------------------------------------------------------------------


def test_the_fields_of_a_hard_bounce() -> None:
    data = bounced("Permanent", "NoEmail", "The recipient's email provider sent a hard bounce.")
    data["data"]["bounce"]["diagnosticCode"] = [
        "smtp; 550 5.1.1 <ann@example.com>: Recipient address rejected",
        "second line",
    ]
    bounce = bounce_of(data)
    assert bounce.provider == "resend"
    assert bounce.id == MSG_ID and bounce.key == f"resend:{MSG_ID}"
    assert bounce.dedup_id is None
    assert bounce.bounced_at == datetime(2024, 11, 22, 23, 41, 12, 126000, tzinfo=UTC)
    assert bounce.message_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert bounce.description == "The receiving server rejected the message permanently (NoEmail)"
    assert bounce.details == (
        "The recipient's email provider sent a hard bounce.\n"
        "smtp; 550 5.1.1 <ann@example.com>: Recipient address rejected\nsecond line"
    )
    assert bounce.smtp_status == "5.1.1"
    assert bounce.tags == ("category:orders",)
    assert dict(bounce.metadata) == {"category": "orders"}
    assert bounce.raw["data"]["bounce"]["subType"] == "NoEmail"
    assert bounce.permanent


def test_tags_as_an_object_or_a_list_of_name_value_pairs() -> None:
    listed = [
        {"name": "category", "value": "orders"},
        {"name": "plan", "value": 3},
        {"name": "flag"},
        {"value": "nameless"},
        "stray",
    ]
    bounce = bounce_of(event(tags=listed))
    assert bounce.tags == ("category:orders", "plan:3", "flag")
    assert dict(bounce.metadata) == {"category": "orders", "plan": "3", "flag": ""}
    bounce = bounce_of(event(tags={"category": "orders", "ids": [1, 2]}))
    assert bounce.tags == ("category:orders", "ids:[1,2]")
    nothings: tuple[object, ...] = (None, {}, [], "orders", 7)
    for nothing in nothings:
        assert bounce_of(event(tags=nothing)).tags == ()
        assert dict(bounce_of(event(tags=nothing)).metadata) == {}


def test_time_is_the_event_time_else_the_email_creation() -> None:
    data = event()
    del data["created_at"]
    assert bounce_of(data).bounced_at == datetime(2024, 11, 22, 23, 41, 11, 894719, tzinfo=UTC)
    data["created_at"] = "not a time"
    assert bounce_of(data).bounced_at == datetime(2024, 11, 22, 23, 41, 11, 894719, tzinfo=UTC)
    del data["data"]["created_at"]
    assert bounce_of(data).bounced_at is None
    data["created_at"] = "2024-11-22T23:41:12"  # no offset: read as UTC
    assert bounce_of(data).bounced_at == datetime(2024, 11, 22, 23, 41, 12, tzinfo=UTC)
    data["created_at"] = "2024-11-23T01:41:12+02:00"
    moment = bounce_of(data).bounced_at
    assert moment == datetime(2024, 11, 22, 23, 41, 12, tzinfo=UTC) and moment.tzinfo is UTC
    data["created_at"] = "0001-01-01T00:00:00+01:00"  # before the calendar in UTC
    assert bounce_of(data).bounced_at is None


def test_details_of_a_failed_and_a_suppressed_event() -> None:
    failed = bounce_of(event("email.failed", failed={"reason": "reached_daily_quota"}))
    assert failed.details == "reached_daily_quota" and failed.smtp_status is None
    suppressed = bounce_of(event("email.suppressed", suppressed={"message": "On the list."}))
    assert suppressed.details == "On the list."
    assert bounce_of(event("email.complained")).details == ""


def test_a_recipient_may_come_as_a_string_or_with_a_display_name() -> None:
    assert bounce_of(event(to="ann@example.com")).email == "ann@example.com"
    assert bounce_of(event(to=["Ann <Ann@Example.com>"])).email == "Ann@Example.com"
    # The same address twice is one recipient: the bounce is hers.
    bounce = bounce_of(event(to=["ann@example.com", "ANN@example.com"]))
    assert (bounce.kind, bounce.email) == ("hard", "ann@example.com")


@pytest.mark.parametrize("to", [[], None, "", [""], [" "], ["", " "]])
@pytest.mark.parametrize("kind", ["email.bounced", "email.complained", "email.failed"])
def test_an_event_without_a_recipient_is_refused_as_other_providers_refuse_one(
    kind: str, to: Any
) -> None:
    # Dispatched with email "" it would reach handlers that look the address up.
    with pytest.raises(PayloadError, match="^required field data.to is missing or empty$"):
        parse(event(kind, to=to))


@pytest.mark.parametrize(
    "data",
    [
        event(to=["ann@example.com", "bob@example.com"]),
        event(to="ann@example.com, bob@example.com"),
        event("email.complained", to=["ann@example.com", "bob@example.com", "cy@example.com"]),
        event("email.suppressed", to=["ann@example.com", "bob@example.com"]),
        event("email.delivery_delayed", to=["ann@example.com", "bob@example.com"]),
    ],
)
def test_several_recipients_flag_nobody(data: dict[str, Any]) -> None:
    # Resend sends one event per recipient, each listing all of them: the bounced
    # address cannot be told apart, so none is marked hard-bounced.
    bounce = bounce_of(data)
    assert bounce.kind == "unknown" and not bounce.permanent
    assert bounce.email == "ann@example.com"
    assert "Resend does not say which" in bounce.description
    assert "\n" not in bounce.description


def test_a_failed_send_of_several_recipients_stays_an_error() -> None:
    # email.failed is about the message, not one recipient.
    bounce = bounce_of(event("email.failed", to=["ann@example.com", "bob@example.com"]))
    assert bounce.kind == "error"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"created_at": "2024-11-22T23:41:12.126Z", "data": {}}, "field type is missing"),
        ({"type": 7, "data": {}}, "field type must be a string, not a number"),
        ({"type": "email.bounced"}, "field data is missing"),
        ({"type": "email.complained", "data": []}, "field data must be an object, not an array"),
        (event(to=7), "field data.to must be an array of strings, not a number"),
        (event(to=["ann@example.com", None]), "field data.to must hold strings, not null"),
        (event(email_id=5), "field data.email_id must be a string"),
        (event(created_at=True), "field data.created_at must be a string, not a boolean"),
        ({**event(), "created_at": 1700000000}, "field created_at must be a string"),
        ([event()], "body is a JSON array; expected an object"),
    ],
)
def test_malformed_events_are_refused_with_a_reason(data: object, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason) as caught:
        parse(data)
    assert "\n" not in caught.value.reason


# -- de-duplication and the replay envelope ---------------------------------------------------


def test_the_svix_id_is_the_key_so_a_retry_is_the_same_event() -> None:
    first, retry = bounce_of(event()), bounce_of(event())
    other = bounce_of(event(), msg_id="msg_another_event")
    assert first.key == retry.key == f"resend:{MSG_ID}" != other.key


def test_the_stored_body_is_a_replay_envelope_parsed_back_to_the_same_key() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(event(), indent=2).encode() + b"\r\n"
    [bounce] = provider().parse(post(body=body, headers={"svix-id": MSG_ID})).events
    envelope = json.loads(bounce.body)
    assert envelope == {"svix-id": MSG_ID, "event": event()}
    assert body[3:] in bounce.body  # the body as received, byte for byte
    # replay: the stored body, no headers.
    [again] = provider().parse(post(body=bounce.body)).events
    assert again.key == bounce.key and again.id == MSG_ID
    assert again == bounce and again.body == bounce.body
    assert dict(again.raw) == dict(bounce.raw)


def test_an_envelope_with_a_header_id_is_read_as_a_body() -> None:
    # Resend never sends one: with an id header the body is the event, and this one is none.
    envelope = {"svix-id": "msg_forged", "event": event()}
    with pytest.raises(PayloadError, match="field type is missing"):
        parse(envelope)


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"svix-id": 5, "event": {}}, "svix-id must be a string, not a number"),
        ({"svix-id": "msg_1", "event": "x"}, "event must be an object, not a string"),
        ({"svix-id": "", "event": event()}, "svix-id is empty"),
        ({"svix-id": "m" * 257, "event": event()}, "longer than 256"),
        ({"svix-id": "msg\n1", "event": event()}, "not printable ASCII"),
        ({"svix-id": "msg_1", "event": {"data": {}}}, "field type is missing"),
    ],
)
def test_a_malformed_envelope_is_refused(envelope: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse(envelope, msg_id=None)


def test_without_any_id_the_key_comes_from_what_identifies_the_event() -> None:
    # A rejected request is stored as received, without its headers.
    bounce = bounce_of(event(), msg_id=None)
    assert bounce.id is None
    assert json.loads(bounce.dedup_id or "") == [
        "email.bounced",
        "2024-11-22T23:41:12.126Z",
        "56761188-7520-42d8-8898-ff6fc54ce618",
        ["ann@example.com"],
    ]
    assert bounce.key.startswith("resend:dedup-sha256:") and "ann@" not in bounce.key
    reformatted = json.dumps(event(), indent=1).encode()
    [same] = provider().parse(post(body=reformatted)).events
    assert same.key == bounce.key
    assert same.body == reformatted  # kept as received: parsed again the same way
    for changed in (
        event("email.complained"),
        {**event(), "created_at": "2024-11-22T23:41:13.000Z"},
        event(email_id="another"),
        event(to=["bob@example.com"]),
    ):
        assert bounce_of(changed, msg_id=None).key != bounce.key
