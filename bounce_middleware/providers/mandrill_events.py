"""Mandrill's webhook bodies: the ``mandrill_events`` form field read into events.

A body is ``application/x-www-form-urlencoded`` with one field,
``mandrill_events``, a JSON array of up to 1,000 events (providers.md,
"Mandrill"). Message events carry ``event``; sync events (the rejection
denylist and allowlist) carry ``type`` instead; inbound messages carry
``event: "inbound"`` and never belong on a tracking webhook.

Mandrill gives no event id: ``_id`` is the MESSAGE id, repeated by every event
of that message. The de-duplication key is therefore a digest of
``[_id, event, ts]`` (``[null, event, ts, email]`` without an ``_id``), and of
``[type, action, ts, email]`` for a sync event, so a retried batch is not
applied twice while a message's later events (a second deferral) still are.

Each Bounce (and each event refused alone) keeps as ``body`` the form body
``mandrill_events=[event]`` (:mod:`.mandrill_form`), the event as it arrived,
which :func:`parse_mandrill` reads again, without headers or signature
(``bounce-middleware replay``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import Parsed
from .fields import (
    a,
    compact_json,
    enhanced_status,
    identity_json,
    not_an_object,
    optional_string,
    unix_time,
)
from .json_batch import (
    event_body,
    freeze_event,
    load_json_array,
    parse_event_list,
    split_json_array,
)
from .mandrill_form import EVENTS_FIELD, FormError, decode_form, form_body

__all__ = [
    "ACKNOWLEDGED_EVENTS",
    "EVENTS_FIELD",
    "EVENT_KINDS",
    "INBOUND_REASON",
    "SYNC_KINDS",
    "parse_fields",
    "parse_mandrill",
]

K = BounceKind

#: Message events -> (kind, description). Any other message event is acknowledged.
EVENT_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "hard_bounce": (K.HARD, "The receiving server rejected the message permanently"),
    "soft_bounce": (K.SOFT, "The message soft-bounced (a temporary cause, e.g. a full mailbox)"),
    # Non-final: Mandrill retries a deferred message; never suppress an address on one.
    "deferral": (K.SOFT, "The receiving server deferred the message; Mandrill keeps trying"),
    "spam": (K.COMPLAINT, "The recipient reported the message as spam"),
    "unsub": (K.UNSUBSCRIBE, "The recipient unsubscribed"),
    "reject": (K.SUPPRESSED, "Not sent: the address is on Mandrill's rejection denylist"),
}
#: The message events Mandrill documents that are answered 200 and never dispatched
#: (unknown events are acknowledged too; this names the known ones).
ACKNOWLEDGED_EVENTS = frozenset({"send", "delivered", "open", "click"})

_DENYLIST = (K.SUPPRESSED, "Mandrill put the address on its rejection denylist")
#: Sync events by (list, action): an address added to (or re-added to, "change") the
#: rejection denylist. Mandrill's docs now call the lists denylist and safelist.
SYNC_KINDS: Mapping[tuple[str, str], tuple[BounceKind, str]] = {
    ("blacklist", "add"): _DENYLIST,
    ("blacklist", "change"): _DENYLIST,
    ("denylist", "add"): _DENYLIST,
    ("denylist", "change"): _DENYLIST,
}

INBOUND_REASON = "inbound message on a tracking webhook: misrouted"


def parse_mandrill(body: bytes) -> Parsed:
    """Parse one Mandrill webhook body (the form), without authenticating it."""
    try:
        fields = decode_form(body)
    except FormError as exc:
        raise PayloadError(exc.reason) from None
    return parse_fields(fields)


_EXPECTED = "Mandrill posts a JSON array of events"


def parse_fields(fields: Mapping[str, str]) -> Parsed:
    """The events of a decoded form; ``[]`` (Mandrill's URL check) is a handshake.

    Each event becomes a :class:`~bounce_middleware.Bounce`, an acknowledged
    event name, or a :class:`~bounce_middleware.providers.base.Rejection`
    whose body is that event alone as a form.
    """
    value = fields.get(EVENTS_FIELD)
    if value is None:
        raise PayloadError("form has no mandrill_events field")
    # Strictly decoded UTF-8 holds no lone surrogate: this cannot fail.
    data = value.encode("utf-8")
    # Each Bounce keeps its event as the text it arrived as (writing 1,000 events back as
    # JSON cost a fifth of a batch): the array is decoded once, each element with its text.
    split = split_json_array(data)
    received: list[str] = []
    if split is None:  # not a well-formed array: say why
        items = load_json_array(data, expected=_EXPECTED)
    else:
        items, received = split
    if not items:
        return Parsed(handshake="empty batch: Mandrill's webhook check")
    # Keyed by the decoded event, alive until we return.
    texts = {id(i): t for i, t in zip(items, received, strict=True)} if received else {}

    def read(item: Any, check_surrogates: bool) -> Bounce | str:
        return _event(item, check_surrogates, texts.get(id(item)))

    return parse_event_list(items, data, read, wrap=form_body)


def _event(item: Any, check_surrogates: bool, text: str | None) -> Bounce | str:
    """One event (``text``: as received, if known): a Bounce, or an acknowledged event's name."""
    if type(item) is not MappingProxyType:
        raise not_an_object(item)
    data: Mapping[str, Any] = item
    event = data.get("event")
    if event is None:
        sync_type = data.get("type")
        if sync_type is None:
            raise PayloadError("an event has neither an event nor a type field")
        return _sync_event(data, sync_type, check_surrogates, text)
    if type(event) is not str:
        raise PayloadError(f"field event must be a string, not {a(event)}")
    name = event.lower()
    if name == "inbound":
        raise PayloadError(INBOUND_REASON)
    rule = EVENT_KINDS.get(name)
    if rule is None:
        return name
    msg = data.get("msg")
    if type(msg) is not MappingProxyType:
        raise PayloadError("required field msg is missing or not an object")
    email = _email(msg.get("email"), "msg.email")
    message_id = optional_string(data, "_id") or optional_string(msg, "_id") or None
    ts = data.get("ts")
    bounced_at = _time(ts)
    details = _string_or_empty(msg, "diag") or _last_diag(msg.get("smtp_events"))
    details = details or _string_or_empty(msg, "bounce_description")
    data = freeze_event(data, check_surrogates=check_surrogates)
    kind, description = rule
    body = _body(data, text)
    identity = [message_id, name, ts] if message_id else [None, name, ts, email]
    return Bounce(
        provider="mandrill",
        id=None,
        email=email,
        kind=kind,
        type=name,
        bounced_at=bounced_at,
        message_id=message_id,
        description=description,
        details=details,
        smtp_status=enhanced_status(details),
        tags=_tags(msg.get("tags")),
        metadata=_metadata(msg.get("metadata")),
        raw=data,
        dedup_id=identity_json(identity),
        body=body,
    )


def _sync_event(
    data: Mapping[str, Any], sync_type: Any, check_surrogates: bool, text: str | None
) -> Bounce | str:
    """A rejection denylist/allowlist change: only additions to the denylist are dispatched."""
    if type(sync_type) is not str:
        raise PayloadError(f"field type must be a string, not {a(sync_type)}")
    action = data.get("action")
    if action is not None and type(action) is not str:
        raise PayloadError(f"field action must be a string, not {a(action)}")
    name, verb = sync_type.lower(), (action or "").lower()
    rule = SYNC_KINDS.get((name, verb))
    if rule is None:
        return f"{name}_{verb}" if verb else name
    entry = data.get("reject")
    if type(entry) is not MappingProxyType:
        raise PayloadError("required field reject is missing or not an object")
    email = _email(entry.get("email"), "reject.email")
    ts = data.get("ts")
    bounced_at = _time(ts)
    details = _string_or_empty(entry, "detail")
    if not details.strip():  # a user's note on a manual entry, else Mandrill's reason
        details = _string_or_empty(entry, "reason")
    data = freeze_event(data, check_surrogates=check_surrogates)
    kind, description = rule
    return Bounce(
        provider="mandrill",
        id=None,
        email=email,
        kind=kind,
        type=name,
        bounced_at=bounced_at,
        description=description,
        details=details,
        smtp_status=enhanced_status(details),
        raw=data,
        dedup_id=identity_json([name, verb, ts, email]),
        body=_body(data, text),
    )


def _body(event: Mapping[str, Any], text: str | None) -> bytes:
    """This event alone as a form body: as received when known, else written back."""
    if text is None:
        return form_body(event_body(event))
    return form_body(("[" + text + "]").encode("utf-8"))


def _email(value: Any, field: str) -> str:
    if value is None or value == "":
        raise PayloadError(f"required field {field} is missing or empty")
    if type(value) is not str:
        raise PayloadError(f"field {field} must be a string, not {a(value)}")
    if not value.strip():
        raise PayloadError(f"required field {field} is missing or empty")
    return value


def _string_or_empty(data: Mapping[str, Any], field: str) -> str:
    # A diagnostic is decoration: a non-string one stays in raw, it refuses nothing.
    value = data.get(field)
    return value if type(value) is str else ""


def _last_diag(smtp_events: Any) -> str:
    """The latest SMTP reply of a deferred message (``msg.smtp_events[-1].diag``)."""
    if type(smtp_events) is not list or not smtp_events:
        return ""
    last = smtp_events[-1]
    return _string_or_empty(last, "diag") if type(last) is MappingProxyType else ""


def _time(value: Any) -> datetime | None:
    """``ts``: when the event happened, in Unix seconds (``msg.ts`` is the send time)."""
    if value is None:
        raise PayloadError("required field ts is missing")
    return unix_time(value, "ts")


def _tags(tags: Any) -> tuple[str, ...]:
    """The strings of ``msg.tags`` (anything else stays in raw)."""
    if type(tags) is not list:
        return ()
    return tuple(tag for tag in tags if type(tag) is str)


def _metadata(metadata: Any) -> Mapping[str, str]:
    """``msg.metadata`` as strings: a non-string value is given as compact JSON.

    PHP writes an empty associative array as ``[]``: anything not an object is none.
    """
    if type(metadata) is not MappingProxyType or not metadata:
        return EMPTY_MAPPING
    if all(type(v) is str for v in metadata.values()):
        frozen: Mapping[str, str] = metadata
        return frozen
    return MappingProxyType(
        {k: v if type(v) is str else compact_json(v) for k, v in metadata.items()}
    )
