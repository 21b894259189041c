"""Postmark: bounce, spam-complaint and subscription-change webhooks.

Field names, types and the Type -> kind table follow Postmark's documentation
(see ``docs/postmark.md`` in the project). Routing is on ``RecordType`` and
``Type``, never on ``TypeCode`` alone: published samples disagree on codes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import Bounce, BounceKind, freeze

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

T = TypeVar("T")


def _optional(data: Mapping[str, Any], name: str, kind: type[T]) -> T | None:
    # JSON null counts as absent: Postmark sends null for fields it has no value for.
    value = data.get(name)
    if value is None:
        return None
    # bool is a subclass of int; a JSON true is never a valid integer field.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(f"field {name} must be a {_JSON_NAMES[kind]}, not a {json_type(value)}")
    return value


def _required(data: Mapping[str, Any], name: str, kind: type[T]) -> T:
    value = _optional(data, name, kind)
    if value is None:
        raise PayloadError(f"required field {name} is missing")
    return value


_JSON_NAMES: dict[type, str] = {str: "string", int: "integer", bool: "boolean", dict: "object"}


def _str(data: Mapping[str, Any], name: str) -> str:
    return _optional(data, name, str) or ""


def _timestamp(data: Mapping[str, Any], name: str) -> datetime | None:
    text = _optional(data, name, str)
    if not text:
        return None
    try:
        # Python 3.11 accepts Postmark's 7-digit fractions (truncating them) and "Z".
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"field {name} is not an ISO 8601 timestamp") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _metadata(data: Mapping[str, Any]) -> Mapping[str, str]:
    meta = _optional(data, "Metadata", dict) or {}
    if not all(isinstance(v, str) for v in meta.values()):
        raise PayloadError("field Metadata must map names to strings")
    frozen: Mapping[str, str] = freeze(meta)
    return frozen


def _is_inbound(data: Mapping[str, Any]) -> bool:
    return "FromFull" in data or "ToFull" in data


class PostmarkProvider:
    """Parses Postmark webhook bodies (old and new payload shapes)."""

    name = "postmark"

    def parse(self, body: bytes) -> Parsed:
        """Return a Bounce, or Ignored for engagement records; raise PayloadError otherwise."""
        data = load_json_object(body)
        digest = hashlib.sha256(body).hexdigest()
        record_type = _optional(data, "RecordType", str)
        if record_type is None:
            if _is_inbound(data):
                raise PayloadError(
                    "this is an inbound e-mail, not a bounce: "
                    "point Postmark's inbound webhook at another URL"
                )
            record_type = "Bounce"  # 2010-era payloads carry no RecordType
        if record_type in ("Bounce", "SpamComplaint"):
            return self._bounce(data, digest)
        if record_type == "SubscriptionChange":
            return self._subscription_change(data, digest)
        if record_type == "Inbound" or _is_inbound(data):
            raise PayloadError("this is an inbound e-mail, not a bounce")
        return Ignored(record_type)

    def _bounce(self, data: dict[str, Any], digest: str) -> Bounce:
        type_ = _required(data, "Type", str)
        event_id = _required(data, "ID", int)
        email = _required(data, "Email", str)
        server_id = _optional(data, "ServerID", int)
        if server_id is None:
            server_id = _optional(data, "ServerId", int)
        can_activate = _optional(data, "CanActivate", bool)
        return Bounce(
            provider=self.name,
            id=str(event_id),
            email=email,
            kind=TYPE_KINDS.get(type_, BounceKind.UNKNOWN),
            type=type_,
            type_code=_optional(data, "TypeCode", int),
            name=_str(data, "Name"),
            description=_str(data, "Description"),
            details=_str(data, "Details"),
            tag=_str(data, "Tag"),
            message_id=_optional(data, "MessageID", str),
            message_stream=_optional(data, "MessageStream", str),
            server_id=server_id,
            from_address=_str(data, "From"),
            subject=_str(data, "Subject"),
            bounced_at=_timestamp(data, "BouncedAt"),
            inactive=bool(_optional(data, "Inactive", bool)),
            can_activate=True if can_activate is None else can_activate,
            dump_available=bool(_optional(data, "DumpAvailable", bool)),
            content=_optional(data, "Content", str),
            metadata=_metadata(data),
            raw=freeze(data),
            body_digest=digest,
        )

    def _subscription_change(self, data: dict[str, Any], digest: str) -> Bounce:
        email = _required(data, "Recipient", str)
        suppress = _required(data, "SuppressSending", bool)
        reason = _optional(data, "SuppressionReason", str)
        origin = _str(data, "Origin")
        if suppress:
            kind = SUPPRESSION_KINDS.get(reason or "", BounceKind.SUPPRESSED)
            description = (
                f"Sending suppressed ({reason or 'no reason given'}) by {origin or 'Postmark'}"
            )
        else:
            kind = BounceKind.SUBSCRIBE
            description = f"Sending reactivated by {origin or 'Postmark'}"
        return Bounce(
            provider=self.name,
            # SubscriptionChange carries no event id: the key is the body digest.
            id=None,
            email=email,
            kind=kind,
            type="SubscriptionChange",
            name=reason or "",
            description=description,
            tag=_str(data, "Tag"),
            message_id=_optional(data, "MessageID", str),
            message_stream=_optional(data, "MessageStream", str),
            server_id=_optional(data, "ServerID", int),
            bounced_at=_timestamp(data, "ChangedAt"),
            inactive=bool(suppress),
            can_activate=kind is not BounceKind.COMPLAINT,
            metadata=_metadata(data),
            raw=freeze(data),
            body_digest=digest,
        )
