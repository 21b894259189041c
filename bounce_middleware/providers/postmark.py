"""Postmark: bounce, spam-complaint and subscription-change webhooks.

Field names, types and the Type -> kind table follow Postmark's documentation
(see ``docs/postmark.md`` in the project). Routing is on ``RecordType`` and
``Type``, never on ``TypeCode`` alone: published samples disagree on codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind
from bounce_middleware.request import WebhookRequest
from bounce_middleware.text import article

from .base import POST_ONLY, BasicCredentials, Parsed, json_type, load_json_object

K = BounceKind

#: Postmark bounce ``Type`` -> kind. An unlisted Type is accepted as ``unknown``.
TYPE_KINDS: Mapping[str, BounceKind] = {
    "HardBounce": K.HARD,
    "Transient": K.SOFT,
    "Unsubscribe": K.UNSUBSCRIBE,
    "Subscribe": K.SUBSCRIBE,
    "AutoResponder": K.AUTO_REPLY,
    "AddressChange": K.AUTO_REPLY,
    "DnsError": K.SOFT,
    "SpamNotification": K.BLOCKED,
    "OpenRelayTest": K.UNKNOWN,
    "Unknown": K.UNKNOWN,
    "SoftBounce": K.SOFT,
    "VirusNotification": K.BLOCKED,
    "ChallengeVerification": K.AUTO_REPLY,
    "BadEmailAddress": K.HARD,
    "SpamComplaint": K.COMPLAINT,
    "ManuallyDeactivated": K.SUPPRESSED,
    "Unconfirmed": K.ERROR,
    "Blocked": K.BLOCKED,
    "SMTPApiError": K.ERROR,
    "InboundError": K.ERROR,
    "DMARCPolicy": K.BLOCKED,
    "TemplateRenderingFailed": K.ERROR,
}

#: SubscriptionChange ``SuppressionReason`` -> kind, when ``SuppressSending`` is true.
SUPPRESSION_KINDS: Mapping[str, BounceKind] = {
    "HardBounce": K.HARD,
    "SpamComplaint": K.COMPLAINT,
    "ManualSuppression": K.SUPPRESSED,
}

#: Engagement records that may reach the same URL; acknowledged, never dispatched.
IGNORED_RECORD_TYPES = frozenset({"Delivery", "Open", "Click"})

_OBJECT = MappingProxyType  # what a JSON object is once frozen by load_json_object
_JSON_NAMES: Mapping[type, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    _OBJECT: "object",
}

#: The JSON type of every Bounce / SpamComplaint field read here.
BOUNCE_FIELDS: Mapping[str, type] = {
    "RecordType": str,
    "ID": int,
    "Type": str,
    "TypeCode": int,
    "Name": str,
    "Tag": str,
    "MessageID": str,
    "ServerID": int,
    "ServerId": int,  # the 2014-era spelling
    "MessageStream": str,
    "Description": str,
    "Details": str,
    "Email": str,
    "From": str,
    "BouncedAt": str,
    "DumpAvailable": bool,
    "Inactive": bool,
    "CanActivate": bool,
    "Subject": str,
    "Content": str,
    "Metadata": _OBJECT,
}
#: What makes a body a Postmark bounce. Every other field may be left out: Postmark has
#: sent an Unsubscribe record with neither Email nor BouncedAt (and "Email": "" on hard
#: bounces), so handlers see ``email == ""`` and ``bounced_at is None`` for those.
BOUNCE_REQUIRED = ("ID", "Type")

#: The JSON type of every SubscriptionChange field read here.
SUBSCRIPTION_FIELDS: Mapping[str, type] = {
    "Recipient": str,
    "SuppressSending": bool,
    "SuppressionReason": str,
    "Origin": str,
    "ChangedAt": str,
    "Tag": str,
    "MessageID": str,
    "ServerID": int,
    "MessageStream": str,
    "Metadata": _OBJECT,
}
SUBSCRIPTION_REQUIRED = ("Recipient", "SuppressSending")


def _check(data: Mapping[str, Any], fields: Mapping[str, type], required: tuple[str, ...]) -> None:
    """Refuse a record missing a required field or holding a field of the wrong JSON type."""
    # Exact type checks: JSON decoding yields exactly these types, and
    # `type(True) is not int`, so a boolean never passes for an integer field.
    # JSON null counts as absent: Postmark sends null for fields it has no value for.
    get = data.get
    for name in required:
        if get(name) is None:
            raise PayloadError(f"required field {name} is missing")
    expected_type = fields.get
    for name, value in data.items():
        expected = expected_type(name)
        if expected is not None and type(value) is not expected and value is not None:
            raise PayloadError(
                f"field {name} must be {article(_JSON_NAMES[expected])}, "
                f"not {article(json_type(value))}"
            )
    metadata = get("Metadata")
    if metadata and not all(type(v) is str for v in metadata.values()):
        raise PayloadError("field Metadata must map names to strings")


def _timestamp(text: str | None, name: str) -> datetime | None:
    """An aware datetime, or None when absent or outside what converts to UTC."""
    if not text:
        return None
    try:
        # Python 3.11 accepts Postmark's 7-digit fractions (truncating them) and "Z".
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"field {name} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    # An offset moves a moment by under a day, so only the calendar's first and last
    # years can fall outside it in UTC (9999-12-31T23:59:59-14:00). A handler calling
    # astimezone() would fail on every retry: treat it as absent (the text stays in raw).
    if moment.year == 1 or moment.year == 9999:
        try:
            moment.astimezone(UTC)
        except OverflowError:
            return None
    return moment


def _is_inbound(data: Mapping[str, Any]) -> bool:
    return "FromFull" in data or "ToFull" in data


def _legacy_record_type(data: Mapping[str, Any]) -> str:
    """The record type of a body without RecordType (sent before 2019), from its shape."""
    if _is_inbound(data):
        raise PayloadError(
            "this is an inbound e-mail, not a bounce: "
            "point Postmark's inbound webhook at another URL"
        )
    # A bounce always had an ID and a Type; engagement records never had either.
    if "ID" in data or "Type" in data:
        return "Bounce"
    if type(data.get("Recipient")) is str:
        if "DeliveredAt" in data:
            return "Delivery"
        if "OriginalLink" in data or "ClickLocation" in data:
            return "Click"
        if "FirstOpen" in data or "ReceivedAt" in data:
            return "Open"
    raise PayloadError("not a Postmark record: no RecordType, and no ID or Type of a bounce")


class Postmark:
    """Postmark's bounce, spam-complaint and subscription-change webhooks.

    Postmark signs nothing: it sends the ``user:password`` put in the webhook
    URL as HTTP Basic credentials, checked against any of ``credentials``
    (several while rotating). ``realm`` is shown by clients in the prompt.
    """

    name: str = "postmark"
    methods: frozenset[str] = POST_ONLY
    refuse_status: int = 400
    retry_status: int | None = None
    #: Constructor keywords as flat settings read them (``bounce.postmark.credentials``).
    options: ClassVar[Mapping[str, str]] = {"credentials": "credentials", "realm": "str"}

    def __init__(self, *, credentials: Iterable[str], realm: str = "bounce-middleware") -> None:
        self.basic = BasicCredentials(credentials, realm=realm)

    def authenticate(self, request: WebhookRequest) -> None:
        """Check the HTTP Basic credentials; raise Unauthorized with a challenge."""
        self.basic.check(request)

    # The same check, run by the front before it reads the body.
    check_headers = authenticate

    def parse(self, request: WebhookRequest) -> Parsed:
        """One event, or an acknowledged Delivery/Open/Click; PayloadError otherwise."""
        return parse_postmark(request.body)


def parse_postmark(body: bytes) -> Parsed:
    """Parse one Postmark webhook body (old and new payload shapes)."""
    data = load_json_object(body)
    record_type = data.get("RecordType")
    if record_type is None:
        record_type = _legacy_record_type(data)
    elif type(record_type) is not str:
        raise PayloadError(
            f"field RecordType must be a string, not {article(json_type(record_type))}"
        )
    if record_type == "Bounce" or record_type == "SpamComplaint":
        return Parsed((_bounce(data, body),))
    if record_type == "SubscriptionChange":
        return Parsed((_subscription_change(data, body),))
    if record_type == "Inbound" or _is_inbound(data):
        raise PayloadError("this is an inbound e-mail, not a bounce")
    return Parsed(acknowledged=(record_type,))


def _bounce(data: Mapping[str, Any], body: bytes) -> Bounce:
    _check(data, BOUNCE_FIELDS, BOUNCE_REQUIRED)
    get = data.get
    type_ = data["Type"]  # required fields are read by subscript: present, checked
    server_id = get("ServerID")
    tag = get("Tag") or ""
    return Bounce(
        provider="postmark",
        id=str(data["ID"]),
        email=get("Email") or "",
        kind=TYPE_KINDS.get(type_, BounceKind.UNKNOWN),
        type=type_,
        type_code=get("TypeCode"),
        name=get("Name") or "",
        description=get("Description") or "",
        details=get("Details") or "",
        tag=tag,
        tags=(tag,) if tag else (),
        message_id=get("MessageID"),
        message_stream=get("MessageStream"),
        server_id=get("ServerId") if server_id is None else server_id,
        from_address=get("From") or "",
        subject=get("Subject") or "",
        bounced_at=_timestamp(get("BouncedAt"), "BouncedAt"),
        inactive=get("Inactive") is True,
        # Absent in the oldest payloads and on Unsubscribe records: only a
        # complaint is documented as not reactivatable.
        can_activate=get("CanActivate") is not False,
        dump_available=get("DumpAvailable") is True,
        content=get("Content"),
        metadata=get("Metadata") or EMPTY_MAPPING,
        raw=data,
        body=body,
    )


def _subscription_change(data: Mapping[str, Any], body: bytes) -> Bounce:
    _check(data, SUBSCRIPTION_FIELDS, SUBSCRIPTION_REQUIRED)
    get = data.get
    suppress: bool = data["SuppressSending"]
    reason = get("SuppressionReason")
    tag = get("Tag") or ""
    origin = get("Origin") or "Postmark"
    if suppress:
        kind = SUPPRESSION_KINDS.get(reason or "", BounceKind.SUPPRESSED)
        description = f"Sending suppressed ({reason or 'no reason given'}) by {origin}"
    else:
        kind = BounceKind.SUBSCRIBE
        description = f"Sending reactivated by {origin}"
    return Bounce(
        provider="postmark",
        # SubscriptionChange carries no event id: the key is the body digest.
        id=None,
        email=data["Recipient"],
        kind=kind,
        type="SubscriptionChange",
        name=reason or "",
        description=description,
        tag=tag,
        tags=(tag,) if tag else (),
        message_id=get("MessageID"),
        message_stream=get("MessageStream"),
        server_id=get("ServerID"),
        bounced_at=_timestamp(get("ChangedAt"), "ChangedAt"),
        inactive=suppress,
        can_activate=kind is not BounceKind.COMPLAINT,
        metadata=get("Metadata") or EMPTY_MAPPING,
        raw=data,
        body=body,
    )
