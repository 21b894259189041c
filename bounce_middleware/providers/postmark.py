"""Postmark: bounce, spam-complaint and subscription-change webhooks.

Field names, types and the Type -> kind table follow Postmark's documentation
(see ``docs/postmark.md`` in the project). Routing is on ``RecordType`` and
``Type``, never on ``TypeCode`` alone: published samples disagree on codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import Ignored, Parsed, json_type, load_json_object

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

#: Every Bounce / SpamComplaint field read here, with its JSON type.
BOUNCE_FIELDS: tuple[tuple[str, type], ...] = (
    ("RecordType", str),
    ("ID", int),
    ("Type", str),
    ("TypeCode", int),
    ("Name", str),
    ("Tag", str),
    ("MessageID", str),
    ("ServerID", int),
    ("ServerId", int),
    ("MessageStream", str),
    ("Description", str),
    ("Details", str),
    ("Email", str),
    ("From", str),
    ("BouncedAt", str),
    ("DumpAvailable", bool),
    ("Inactive", bool),
    ("CanActivate", bool),
    ("Subject", str),
    ("Content", str),
    ("Metadata", _OBJECT),
)
BOUNCE_REQUIRED = ("ID", "Type", "Email")

#: Every SubscriptionChange field read here, with its JSON type.
SUBSCRIPTION_FIELDS: tuple[tuple[str, type], ...] = (
    ("Recipient", str),
    ("SuppressSending", bool),
    ("SuppressionReason", str),
    ("Origin", str),
    ("ChangedAt", str),
    ("Tag", str),
    ("MessageID", str),
    ("ServerID", int),
    ("MessageStream", str),
    ("Metadata", _OBJECT),
)
SUBSCRIPTION_REQUIRED = ("Recipient", "SuppressSending")


def _fields(
    data: Mapping[str, Any], fields: tuple[tuple[str, type], ...], required: tuple[str, ...]
) -> list[Any]:
    """The values of ``fields`` in table order, each checked against its JSON type."""
    # Exact type checks: JSON decoding yields exactly these types, and
    # `type(True) is not int`, so a boolean never passes for an integer field.
    # JSON null counts as absent: Postmark sends null for fields it has no value for.
    get = data.get
    for name in required:
        if get(name) is None:
            raise PayloadError(f"required field {name} is missing")
    values = []
    for name, kind in fields:
        value = get(name)
        if type(value) is not kind and value is not None:
            raise PayloadError(
                f"field {name} must be a {_JSON_NAMES[kind]}, not a {json_type(value)}"
            )
        values.append(value)
    metadata = get("Metadata")
    if metadata and not all(type(v) is str for v in metadata.values()):
        raise PayloadError("field Metadata must map names to strings")
    return values


def _timestamp(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        # Python 3.11 accepts Postmark's 7-digit fractions (truncating them) and "Z".
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"field {name} is not an ISO 8601 timestamp") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _is_inbound(data: Mapping[str, Any]) -> bool:
    return "FromFull" in data or "ToFull" in data


class PostmarkProvider:
    """Parses Postmark webhook bodies (old and new payload shapes)."""

    name = "postmark"

    def parse(self, body: bytes) -> Parsed:
        """Return a Bounce, or Ignored for engagement records; raise PayloadError otherwise."""
        data = load_json_object(body)
        record_type = data.get("RecordType")
        if record_type is None:
            if _is_inbound(data):
                raise PayloadError(
                    "this is an inbound e-mail, not a bounce: "
                    "point Postmark's inbound webhook at another URL"
                )
            record_type = "Bounce"  # 2010-era payloads carry no RecordType
        elif type(record_type) is not str:
            raise PayloadError(f"field RecordType must be a string, not a {json_type(record_type)}")
        if record_type in ("Bounce", "SpamComplaint"):
            return self._bounce(data, body)
        if record_type == "SubscriptionChange":
            return self._subscription_change(data, body)
        if record_type == "Inbound" or _is_inbound(data):
            raise PayloadError("this is an inbound e-mail, not a bounce")
        return Ignored(record_type)

    def _bounce(self, data: Mapping[str, Any], body: bytes) -> Bounce:
        (
            _record_type,
            event_id,
            type_,
            type_code,
            name,
            tag,
            message_id,
            server_id,
            server_id_2010,
            message_stream,
            description,
            details,
            email,
            from_address,
            bounced_at,
            dump_available,
            inactive,
            can_activate,
            subject,
            content,
            metadata,
        ) = _fields(data, BOUNCE_FIELDS, BOUNCE_REQUIRED)
        return Bounce(
            provider=self.name,
            id=str(event_id),
            email=email,
            kind=TYPE_KINDS.get(type_, BounceKind.UNKNOWN),
            type=type_,
            type_code=type_code,
            name=name or "",
            description=description or "",
            details=details or "",
            tag=tag or "",
            message_id=message_id,
            message_stream=message_stream,
            server_id=server_id if server_id is not None else server_id_2010,
            from_address=from_address or "",
            subject=subject or "",
            bounced_at=_timestamp(bounced_at, "BouncedAt"),
            inactive=bool(inactive),
            can_activate=True if can_activate is None else can_activate,
            dump_available=bool(dump_available),
            content=content,
            metadata=metadata or EMPTY_MAPPING,
            raw=data,
            body=body,
        )

    def _subscription_change(self, data: Mapping[str, Any], body: bytes) -> Bounce:
        (
            email,
            suppress,
            reason,
            origin,
            changed_at,
            tag,
            message_id,
            server_id,
            message_stream,
            metadata,
        ) = _fields(data, SUBSCRIPTION_FIELDS, SUBSCRIPTION_REQUIRED)
        origin = origin or "Postmark"
        if suppress:
            kind = SUPPRESSION_KINDS.get(reason or "", BounceKind.SUPPRESSED)
            description = f"Sending suppressed ({reason or 'no reason given'}) by {origin}"
        else:
            kind = BounceKind.SUBSCRIBE
            description = f"Sending reactivated by {origin}"
        return Bounce(
            provider=self.name,
            # SubscriptionChange carries no event id: the key is the body digest.
            id=None,
            email=email,
            kind=kind,
            type="SubscriptionChange",
            name=reason or "",
            description=description,
            tag=tag or "",
            message_id=message_id,
            message_stream=message_stream,
            server_id=server_id,
            bounced_at=_timestamp(changed_at, "ChangedAt"),
            inactive=suppress,
            can_activate=kind is not BounceKind.COMPLAINT,
            metadata=metadata or EMPTY_MAPPING,
            raw=data,
            body=body,
        )
