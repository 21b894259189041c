"""Mailgun's ``event-data``: the event -> kind table and the fields of a Bounce.

Facts and sources: ``docs/providers.md``, "Mailgun". Fields that identify the
event (``event``, ``id``, ``recipient``, ``timestamp``) are refused when of the
wrong JSON type; descriptive ones (tags, user variables, delivery status) are
read liberally: one of the wrong type is left in ``raw`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import getaddresses
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import Parsed, load_json_object
from .fields import a, compact_json, optional_string

K = BounceKind

#: Dispatched events other than ``failed``, and their kind.
EVENT_KINDS: Mapping[str, BounceKind] = MappingProxyType(
    {"complained": K.COMPLAINT, "unsubscribed": K.UNSUBSCRIBE, "rejected": K.ERROR}
)
#: ``failed`` events by ``severity``. Temporary failures are not final: Mailgun retries.
#: A ``failed`` event without a known severity is dispatched as ``unknown``.
FAILED_KINDS: Mapping[str, BounceKind] = MappingProxyType(
    {"permanent": K.HARD, "temporary": K.SOFT}
)
#: A permanent failure whose ``reason`` starts so (``suppress-bounce``, code 605) was
#: never sent: the address is on Mailgun's suppression list.
SUPPRESSED_REASON_PREFIX = "suppress-"
#: Engagement and delivery events: answered 200, never dispatched. So is any event
#: not named here or above (Mailgun adds events; refusing one would only make it retry).
ACKNOWLEDGED_EVENTS = frozenset({"accepted", "delivered", "opened", "clicked", "stored"})


def parse_mailgun(body: bytes) -> Parsed:
    """Parse one Mailgun webhook body (``{"signature", "event-data"}``); the signature
    is not checked here (:meth:`Mailgun.authenticate` does)."""
    return parse_decoded(load_json_object(body), body)


def parse_decoded(data: Mapping[str, Any], body: bytes) -> Parsed:
    """Parse a body already decoded by :func:`~.base.load_json_object` (read-only
    mappings and tuples, as this module expects). Raises nothing but PayloadError."""
    try:
        return _parse_decoded(data, body)
    except RecursionError:
        # A user variable nested some hundreds deep decodes, but cannot be written
        # back as the compact JSON its metadata value is.
        raise PayloadError("body is nested too deeply") from None


def _parse_decoded(data: Mapping[str, Any], body: bytes) -> Parsed:
    event_data = data.get("event-data")
    if event_data is None:
        raise PayloadError("field event-data is missing: not a Mailgun webhook body")
    if type(event_data) is not MappingProxyType:
        raise PayloadError(f"field event-data must be an object, not {a(event_data)}")
    event = event_data.get("event")
    if type(event) is not str:
        if event is None:
            raise PayloadError("field event-data.event is missing")
        raise PayloadError(f"field event-data.event must be a string, not {a(event)}")
    if event == "failed":
        severity = event_data.get("severity")
        kind = FAILED_KINDS.get(severity, K.UNKNOWN) if type(severity) is str else K.UNKNOWN
        reason = event_data.get("reason")
        if kind is K.HARD and type(reason) is str and reason.startswith(SUPPRESSED_REASON_PREFIX):
            kind = K.SUPPRESSED
    else:
        found = EVENT_KINDS.get(event)
        if found is None:
            return Parsed(acknowledged=(event,))
        kind = found
    return Parsed((_bounce(event, kind, event_data, body),))


def _bounce(event: str, kind: BounceKind, data: Mapping[str, Any], body: bytes) -> Bounce:
    event_id = _string(data, "id")
    recipient = _string(data, "recipient")
    headers = _object(_object(data, "message"), "headers")
    if recipient is None:  # rejected events name no recipient: read the To header
        recipient = _first_address(headers.get("to"))
    stamp = data.get("timestamp")
    if stamp is not None and type(stamp) is not float and type(stamp) is not int:
        raise PayloadError(f"field event-data.timestamp must be a number, not {a(stamp)}")
    status = _object(data, "delivery-status")
    reject = _object(data, "reject")
    tags = data.get("tags")
    return Bounce(
        provider="mailgun",
        id=event_id,
        email=recipient or "",
        kind=kind,
        type=event,
        bounced_at=_moment(stamp),
        message_id=_text(headers.get("message-id")) or None,
        description=_text(status.get("description")) or _text(reject.get("description")),
        details=_text(status.get("message")) or _text(reject.get("reason")),
        smtp_status=_smtp_status(status),
        tags=tuple(t for t in tags if type(t) is str) if type(tags) is tuple else (),
        metadata=_metadata(data.get("user-variables")),
        raw=data,
        # Mailgun's ids are unique within a day only (providers.md).
        dedup_id=None if event_id is None else f"{event_id}:{stamp!r}:{recipient or ''}",
        body=body,
    )


def _string(data: Mapping[str, Any], name: str) -> str | None:
    """A field that identifies the event: absent, or a string (anything else is refused)."""
    return optional_string(data, name, f"event-data.{name}")


def _object(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    # Descriptive fields are read liberally: one of the wrong type is left in raw only.
    value = data.get(name)
    return value if type(value) is MappingProxyType else EMPTY_MAPPING


def _text(value: object) -> str:
    return value if type(value) is str else ""


def _first_address(to: object) -> str | None:
    if type(to) is not str:
        return None
    for _, address in getaddresses([to]):
        if "@" in address:
            return address
    return None


def _moment(stamp: float | int | None) -> datetime | None:
    """An aware UTC datetime, or None when absent or outside what a datetime holds."""
    if stamp is None:
        return None
    try:
        return datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None  # the number stays in raw


def _smtp_status(status: Mapping[str, Any]) -> str | None:
    enhanced = status.get("enhanced-code")
    if type(enhanced) is str and enhanced.strip():
        return enhanced.strip()
    code = status.get("code")
    # 6xx codes are Mailgun's own (605: previously bounced), not an SMTP reply.
    if type(code) is int and 200 <= code < 600:
        return str(code)
    return None


def _metadata(variables: object) -> Mapping[str, str]:
    """``user-variables`` as strings: a non-string value (Mailgun decodes JSON ones) is
    given as compact JSON, so nothing the sender attached is lost."""
    if type(variables) is not MappingProxyType or not variables:
        return EMPTY_MAPPING
    if all(type(v) is str for v in variables.values()):
        return variables
    return MappingProxyType(
        {k: v if type(v) is str else compact_json(v) for k, v in variables.items()}
    )
