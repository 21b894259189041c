"""Resend's event bodies ``{"type", "created_at", "data"}``: the kind table and a Bounce.

Facts and sources: ``docs/providers.md``, "Resend". Fields that identify the
event (``type``, ``created_at``, ``data.email_id``, ``data.to``) are refused
when of the wrong JSON type; descriptive ones (the bounce block, tags) are
read liberally: one of the wrong type is left in ``raw`` only.

The event id is the ``svix-id`` header, not in the body. So that ``replay``
(which re-parses a stored body without headers) finds the same event, a
Bounce keeps as its ``body`` a replay envelope ``{"svix-id": id, "event":
<the body as received>}``, which :func:`parse_resend` reads back to the same
key. A body without any id (a rejected request replayed) gets a ``dedup_id``
from its type, time, e-mail id and recipients instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import getaddresses
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import Parsed, load_json_object
from .fields import a, compact_json, enhanced_status, identity_json, optional_string

K = BounceKind

#: The provider name: the prefix of every event key.
PROVIDER = "resend"

#: Events whose kind depends on no field: event type -> (kind, description).
EVENT_KINDS: Mapping[str, tuple[BounceKind, str]] = MappingProxyType(
    {
        "email.delivery_delayed": (
            K.SOFT,
            "Delivery is delayed; Resend keeps trying (not final: never suppress on it)",
        ),
        "email.complained": (K.COMPLAINT, "The recipient reported the message as spam"),
        "email.suppressed": (K.SUPPRESSED, "Not sent: the address is on a suppression list"),
        "email.failed": (K.ERROR, "Not sent: Resend failed to send the message"),
    }
)
#: ``email.bounced`` by ``bounce.type`` (Amazon SES's values: Resend sends through SES).
BOUNCE_TYPE_KINDS: Mapping[str, tuple[BounceKind, str]] = MappingProxyType(
    {
        "Permanent": (K.HARD, "The receiving server rejected the message permanently"),
        "Transient": (K.SOFT, "The message bounced temporarily"),
        "Undetermined": (K.UNKNOWN, "The message bounced; the cause is undetermined"),
    }
)
#: A ``Permanent`` bounce with one of these ``subType`` values was never sent.
SUPPRESSED_SUBTYPES = frozenset({"Suppressed", "OnAccountSuppressionList"})
#: ... and so was one whose message says so ("Resend has suppressed sending to ...").
SUPPRESSED_MESSAGE = "suppressed sending"
SUPPRESSED_BOUNCE = (K.SUPPRESSED, "Not sent: the address is on a suppression list")
#: An ``email.bounced`` without a known ``bounce.type``: not enough to flag the address.
UNKNOWN_BOUNCE = (K.UNKNOWN, "The message bounced (Resend gave no bounce type)")
#: Kinds about one recipient: with several in ``data.to`` nobody can tell which one.
RECIPIENT_KINDS = frozenset({K.HARD, K.SOFT, K.SUPPRESSED, K.COMPLAINT, K.UNKNOWN})
#: Every other type (email.sent, .delivered, .opened, .clicked, .scheduled, .received,
#: contact.*, domain.*, and any Resend adds) is acknowledged: answered 200, not dispatched.

#: The replay envelope's keys: a real Resend body never has exactly these.
ENVELOPE_KEYS = frozenset({"svix-id", "event"})
#: Svix's ids are ~30 characters; the header check allows this many.
MAX_ID_LENGTH = 256


def parse_resend(body: bytes, msg_id: str | None = None) -> Parsed:
    """Parse one Resend webhook body; ``msg_id`` is its ``svix-id`` (or ``webhook-id``).

    Without ``msg_id``, a replay envelope (what a Bounce keeps as ``body``)
    supplies it. The signature is not checked here (:meth:`Resend.authenticate` is).
    Raises nothing but :class:`PayloadError`.
    """
    try:
        return _parse(body, msg_id)
    except RecursionError:
        # The decoder reads deeper than the encoder writes: a tag value nested some
        # hundreds deep decodes, then cannot be written back as text (data.tags).
        raise PayloadError("body is nested too deeply") from None


def _parse(body: bytes, msg_id: str | None) -> Parsed:
    data = load_json_object(body)
    if msg_id is None and data.keys() == ENVELOPE_KEYS:
        msg_id = data["svix-id"]
        if type(msg_id) is not str:
            raise PayloadError(f"replay envelope: svix-id must be a string, not {a(msg_id)}")
        event = data["event"]
        if type(event) is not MappingProxyType:
            raise PayloadError(f"replay envelope: event must be an object, not {a(event)}")
        check_id(msg_id)
        return _parse_event(event, msg_id, body, enveloped=True)
    if msg_id is not None:
        check_id(msg_id)
    return _parse_event(data, msg_id, body, enveloped=False)


def check_id(msg_id: str) -> None:
    """Refuse an event id no store key should hold (what the header check refuses too)."""
    if not msg_id or len(msg_id) > MAX_ID_LENGTH:
        raise PayloadError(f"svix-id is empty or longer than {MAX_ID_LENGTH} characters")
    if not msg_id.isascii() or not msg_id.isprintable():
        raise PayloadError("svix-id is not printable ASCII")


def replay_envelope(msg_id: str, body: bytes) -> bytes:
    """``{"svix-id": msg_id, "event": <body>}``, embedding the body's exact text.

    ``body`` must be a JSON object :func:`load_json_object` accepted, so the
    result is JSON too, and it decodes to exactly what the body did.
    """
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]  # a BOM is allowed at the start of a body, not inside one
    return b'{"svix-id":' + json.dumps(msg_id).encode("ascii") + b',"event":' + body + b"}"


def _parse_event(
    event: Mapping[str, Any], msg_id: str | None, body: bytes, *, enveloped: bool
) -> Parsed:
    """The event's Bounce (or acknowledged type); ``body`` as received, envelope or not."""
    event_type = event.get("type")
    if type(event_type) is not str:
        if event_type is None:
            raise PayloadError("field type is missing: not a Resend webhook body")
        raise PayloadError(f"field type must be a string, not {a(event_type)}")
    data = event.get("data")
    rule = EVENT_KINDS.get(event_type)
    if event_type == "email.bounced":
        rule = _bounce_rule(data)
    if rule is None:
        return Parsed(acknowledged=(event_type,))
    if type(data) is not MappingProxyType:
        if data is None:
            raise PayloadError("field data is missing")
        raise PayloadError(f"field data must be an object, not {a(data)}")
    created_at = optional_string(event, "created_at")
    email_created_at = optional_string(data, "created_at", "data.created_at")
    email_id = optional_string(data, "email_id", "data.email_id")
    recipients = _recipients(data.get("to"))
    if not recipients:  # as every provider: an event about nobody can flag nobody
        raise PayloadError("required field data.to is missing or empty")
    kind, description = rule
    if kind in RECIPIENT_KINDS and len(recipients) > 1:
        description = (
            f"{description}, for one of the message's {len(recipients)} recipients: Resend "
            "does not say which, so no address is flagged (email is the first listed)"
        )
        kind = K.UNKNOWN
    tags, metadata = _tags(data.get("tags"))
    details, smtp_status = _diagnostic(event_type, data)
    return Parsed(
        (
            Bounce(
                provider=PROVIDER,
                id=msg_id,
                email=recipients[0],
                kind=kind,
                type=event_type,
                bounced_at=_moment(created_at) or _moment(email_created_at),
                message_id=email_id or None,
                description=description,
                details=details,
                smtp_status=smtp_status,
                tags=tags,
                metadata=metadata,
                raw=event,
                dedup_id=None
                if msg_id is not None
                else _dedup_id(event_type, created_at, email_id, recipients),
                body=body if enveloped or msg_id is None else replay_envelope(msg_id, body),
            ),
        )
    )


def _bounce_rule(data: object) -> tuple[BounceKind, str]:
    bounce = data.get("bounce") if type(data) is MappingProxyType else None
    if type(bounce) is not MappingProxyType:
        return UNKNOWN_BOUNCE
    bounce_type = bounce.get("type")
    rule = BOUNCE_TYPE_KINDS.get(bounce_type) if type(bounce_type) is str else None
    if rule is None:
        return UNKNOWN_BOUNCE
    sub_type = bounce.get("subType")
    if type(sub_type) is not str:
        sub_type = ""  # descriptive: one of another JSON type stays in raw
    if bounce_type == "Permanent":
        message = bounce.get("message")
        if sub_type in SUPPRESSED_SUBTYPES or (
            type(message) is str and SUPPRESSED_MESSAGE in message.lower()
        ):
            return SUPPRESSED_BOUNCE
    # Named in our one-line description only when it looks like SES's names (NoEmail).
    if (
        sub_type
        and sub_type != bounce_type
        and sub_type.isascii()
        and sub_type.isalnum()
        and len(sub_type) <= 40
    ):
        return rule[0], f"{rule[1]} ({sub_type})"
    return rule


def _recipients(to: object) -> list[str]:
    """The addresses of ``data.to`` (an array of strings, or one string), each once."""
    if to is None:
        return []
    if type(to) is str:
        entries: tuple[object, ...] = (to,)
    elif type(to) is tuple:
        entries = to
    else:
        raise PayloadError(f"field data.to must be an array of strings, not {a(to)}")
    found: dict[str, str] = {}
    for entry in entries:
        if type(entry) is not str:
            raise PayloadError(f"field data.to must hold strings, not {a(entry)}")
        # "Ann <ann@example.com>" and "a@x, b@y" are read as addresses; an entry
        # that holds none is kept as written, so that it still counts.
        addresses = [a for _, a in getaddresses([entry]) if "@" in a] or [entry.strip()]
        for address in addresses:
            if address:
                found.setdefault(address.casefold(), address)
    return list(found.values())


def _moment(text: str | None) -> datetime | None:
    """An aware UTC datetime, or None when absent or not ISO 8601 (the text stays in raw)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)  # Python 3.11 reads "Z" and 1-6 digit fractions
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC equivalent
        return None


def _tags(tags: object) -> tuple[tuple[str, ...], Mapping[str, str]]:
    """``data.tags`` as ``("name:value", ...)`` and as ``{name: value}``.

    Resend's docs show an object ``{name: value}``; its own ingester's types a
    list of ``{"name", "value"}``: both are read. A non-string value is given
    as compact JSON; entries of another shape are left in ``raw``.
    """
    pairs: list[tuple[str, str]] = []
    if type(tags) is MappingProxyType:
        pairs = [(name, _text(value)) for name, value in tags.items()]
    elif type(tags) is tuple:
        for tag in tags:
            if type(tag) is MappingProxyType and type(tag.get("name")) is str:
                pairs.append((tag["name"], _text(tag.get("value"))))
    if not pairs:
        return (), EMPTY_MAPPING
    return tuple(f"{n}:{v}" if v else n for n, v in pairs), MappingProxyType(dict(pairs))


def _text(value: object) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    return compact_json(value)


def _diagnostic(event_type: str, data: Mapping[str, Any]) -> tuple[str, str | None]:
    """``details`` (Resend's message, then the SMTP diagnostic lines) and the enhanced code."""
    block_name = {"email.failed": "failed", "email.suppressed": "suppressed"}.get(
        event_type, "bounce"
    )
    block = data.get(block_name)
    if type(block) is not MappingProxyType:
        return "", None
    lines: list[str] = []
    for name in ("message", "reason"):
        value = block.get(name)
        if type(value) is str and value.strip():
            lines.append(value.strip())
    codes = block.get("diagnosticCode")
    if type(codes) is str:
        codes = (codes,)
    smtp_status = None
    if type(codes) is tuple:
        for code in codes:
            if type(code) is str and code.strip():
                lines.append(code.strip())
                if smtp_status is None:
                    smtp_status = enhanced_status(code)
    return "\n".join(lines), smtp_status


def _dedup_id(
    event_type: str, created_at: str | None, email_id: str | None, recipients: list[str]
) -> str:
    return identity_json([event_type, created_at, email_id, recipients])
