"""Brevo's transactional webhook events, one decoded JSON object each, into Bounces.

The event table follows ``docs/providers.md`` ("Brevo"): Brevo's reference,
django-anymail's ``brevo.py`` [AM] and symfony's Brevo bridge [SYM].
:mod:`bounce_middleware.providers.brevo` decodes the body and calls
:func:`read_event` once per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import JSON_DECODER, holds_surrogate
from .fields import a, check_strings, enhanced_status, identity_json, not_an_object, unix_time
from .json_batch import event_body, freeze_event

__all__ = ["ACKNOWLEDGED_EVENTS", "EVENT_KINDS", "METADATA_KEY", "read_event"]

K = BounceKind

#: Brevo ``event`` -> (kind, description). Any other event is acknowledged (200) and
#: never dispatched: :data:`ACKNOWLEDGED_EVENTS` and names Brevo may add later.
EVENT_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "hard_bounce": (K.HARD, "The receiving server rejected the message permanently"),
    "invalid_email": (K.HARD, "Not sent: Brevo found the address invalid"),
    "soft_bounce": (K.SOFT, "The receiving server rejected the message for now"),
    # Non-final: Brevo keeps trying; store it, never suppress the address on it.
    "deferred": (K.SOFT, "The receiving server deferred the message; Brevo keeps trying"),
    # reason: "blocked : due to unsubscribed user", "... hard bounced user"...
    "blocked": (K.SUPPRESSED, "Not sent: Brevo blocked the address (suppression list)"),
    "spam": (K.COMPLAINT, "The recipient reported the message as spam"),
    "complaint": (K.COMPLAINT, "The recipient reported the message as spam"),
    "unsubscribed": (K.UNSUBSCRIBE, "The recipient unsubscribed"),
    # django-anymail's table spells it so.
    "unsubscribe": (K.UNSUBSCRIBE, "The recipient unsubscribed"),
    "error": (K.ERROR, "Not sent: Brevo failed to send the message"),
}

#: The events Brevo documents that are not bounces: answered 200, never dispatched.
ACKNOWLEDGED_EVENTS = frozenset(
    {
        "request", "delivered", "opened", "unique_opened", "proxy_open", "unique_proxy_open",
        "click",
    }
)  # fmt: skip

#: Where ``X-Mailin-custom`` goes in ``metadata`` when it is not a JSON object of strings.
METADATA_KEY = "X-Mailin-custom"

#: String fields read into a Bounce: any other JSON type there refuses the event.
_STRING_FIELDS = ("email", "message-id", "reason")
#: ``ts_epoch`` is in milliseconds in real captures (1685543827372) and in seconds in
#: some of Brevo's doc samples (1604933623). At or above this it is milliseconds:
#: 10**11 s would be the year 5138, 10**11 ms is March 1973.
_MILLISECONDS_FROM = 10**11
#: Time fields by preference: ts_epoch is UTC; ts_event and ts follow the account's
#: timezone according to [AM] (real captures show ts_event == ts_epoch // 1000).
_TIME_FIELDS = ("ts_epoch", "ts_event", "ts")
#: Milliseconds until the year 2286: 13 digits; 16 leaves room, and refuses absurd ones.
_MAX_TIME_DIGITS = 16


def read_event(item: Any, check_surrogates: bool, received: bytes = b"") -> Bounce | str:
    """One Brevo event: a Bounce to dispatch, or the (lower-case) name of an acknowledged one.

    ``received`` is the event's own JSON text as it arrived, when the request
    held it alone: the Bounce's ``body`` is then ``[`` that ``]`` instead of
    the event written again. Raises :class:`PayloadError` for an event that
    can never be accepted.
    """
    if type(item) is not MappingProxyType:
        raise not_an_object(item)
    data: Mapping[str, Any] = item
    event = data.get("event")
    if event is None:
        raise PayloadError("required field event is missing")
    if type(event) is not str:
        raise PayloadError(f"field event must be a string, not {a(event)}")
    name = event.lower()
    rule = EVENT_KINDS.get(name)
    if rule is None:
        return name
    get = data.get
    check_strings(data, _STRING_FIELDS)
    email = get("email")
    if not email:
        raise PayloadError("required field email is missing or empty")
    time_field, stamp, bounced_at = _time(data)
    tags = _tags(get("tags"), get("tag"))
    data = freeze_event(data, check_surrogates=check_surrogates)
    message_id = get("message-id") or None
    reason = get("reason") or ""
    kind, description = rule
    return Bounce(
        provider="brevo",
        id=None,  # Brevo's "id" is the webhook's, the same on every event
        email=email,
        kind=kind,
        type=name,
        bounced_at=bounced_at,
        message_id=message_id,
        description=description,
        details=reason.strip(),  # Brevo may start it with a space
        smtp_status=enhanced_status(reason),  # " 550 5.1.1 ..."
        tags=tags,
        metadata=_metadata(get(METADATA_KEY)),
        raw=data,
        dedup_id=_dedup_id(message_id, event, email, time_field, stamp),
        body=b"[" + received + b"]" if received else event_body(data),
    )


def _time(data: Mapping[str, Any]) -> tuple[str, Any, datetime | None]:
    """The first time field present, its value as sent, and the aware time it means."""
    for field in _TIME_FIELDS:
        value = data.get(field)
        if value is not None:
            # Seconds or milliseconds (told apart by magnitude), as a number or digits.
            moment = unix_time(
                value,
                field,
                digit_strings=True,
                milliseconds_from=_MILLISECONDS_FROM,
                max_digits=_MAX_TIME_DIGITS,
                expected="a Unix time",
            )
            return field, value, moment
    return "", None, None


def _tags(tags: Any, tag: Any) -> tuple[str, ...]:
    """``tags`` (a list) when present; else ``tag``, which Brevo fills three ways.

    ``tag`` is a JSON-encoded list (``'["welcome","tag2"]'``) when the message had
    tags, the ``X-Mailin-Tag`` header's single tag, or a template's name. Tags
    only describe the event: what is not a string is left in ``raw`` only, as
    a ``tags`` of another JSON type is (``tag`` is read instead).
    """
    if type(tags) is str:
        return (tags,) if tags else ()
    if type(tags) is list or type(tags) is tuple:
        return tuple(t for t in tags if type(t) is str and t)
    if type(tag) is not str or not tag:
        return ()
    if tag.startswith("["):
        decoded = _decode(tag)
        if type(decoded) is list and all(type(t) is str for t in decoded):
            return tuple(decoded)
    return (tag,)


def _metadata(custom: Any) -> Mapping[str, str]:
    """``X-Mailin-custom``: the sender's custom header, a string (JSON if they sent JSON).

    A JSON object whose values are all strings becomes the metadata itself;
    anything else (plain text, numbers inside, another JSON type) is kept
    whole, as sent, under :data:`METADATA_KEY`, so nothing is reinterpreted.
    """
    if custom is None or custom == "":
        return EMPTY_MAPPING
    text = custom
    if type(custom) is str:
        if custom.lstrip().startswith("{"):
            decoded = _decode(custom)
            if type(decoded) is MappingProxyType and all(type(v) is str for v in decoded.values()):
                frozen: Mapping[str, str] = decoded
                return frozen
    else:
        # Not what Brevo documents (a string): an object of strings is read as one.
        if isinstance(custom, Mapping) and all(type(v) is str for v in custom.values()):
            return MappingProxyType(dict(custom))
        # event_body writes "[value]": the value's compact JSON is between the brackets.
        text = event_body(custom).decode("utf-8")[1:-1]
    return MappingProxyType({METADATA_KEY: text})


def _decode(text: str) -> Any:
    """JSON inside a string field; None when it is not JSON (or holds a lone surrogate)."""
    try:
        decoded = JSON_DECODER.decode(text)
    except (ValueError, RecursionError):  # PayloadError (NaN, Infinity) is a ValueError
        return None
    # A lone surrogate can only come from an escape: look for one only then.
    if ("\\ud" in text or "\\uD" in text) and holds_surrogate(decoded):
        return None
    return decoded


def _dedup_id(message_id: str | None, event: str, email: str, time_field: str, stamp: Any) -> str:
    """What identifies an event: Brevo gives no event id.

    ``[message-id, event, email, ts_epoch]`` as sent; an event without
    ``ts_epoch`` (older doc samples) gets ``[message-id, event, email, null,
    field, value]`` with the time field it has (``ts_event`` or ``ts``), so
    two such events never share a key with one that has ``ts_epoch``.
    """
    if time_field == "ts_epoch":
        parts: list[Any] = [message_id, event, email, stamp]
    elif time_field:
        parts = [message_id, event, email, None, time_field, stamp]
    else:
        parts = [message_id, event, email, None]
    return identity_json(parts)
