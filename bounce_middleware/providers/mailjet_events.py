"""Mailjet Event API bodies -> events: one event object, or a grouped array of them.

Mailjet posts one JSON object per event, or, with "group events" (Version 2
of the event callback URL), a JSON array of the last second's events of
mixed types. The tables follow Mailjet's Event API guide (``docs/providers.md``
in the project, section 4, "Mailjet").

Mailjet gives no event id. The de-duplication key (:attr:`Bounce.key`, which
holds only its digest) is the JSON list ``[message_id, event, time, email]``
with ``message_id`` as a decimal string (below): the same event gets the same
key whether it arrives alone or in a grouped batch, whether its id came as the
number ``MessageID`` or the string ``mj_message_id``, and a retried batch runs
nothing twice.

Fields: ``message_id`` is ``str(MessageID)`` (a 64-bit integer, read as a
Python int: never through a float, so no digit is lost), else the deprecated
``mj_message_id`` (the same number as a string), else ``Message_GUID``;
``type`` is the event name; ``bounced_at`` is ``time`` (integer Unix
seconds; anything else refuses the event); ``details`` is ``comment`` (the
remote server's SMTP text), else ``error``, else ``error_related_to``, else a
complaint's ``source``; ``smtp_status`` is the enhanced status code found in
``comment``; ``tags`` is ``customcampaign`` (the campaign name set at send,
if any); ``metadata`` holds ``CustomID`` and ``Payload`` (as set at send)
when they are non-empty strings. Everything else stays in ``raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import Parsed
from .fields import (
    a,
    check_strings,
    enhanced_status,
    identity_json,
    not_an_object,
    optional_string,
    unix_time,
)
from .json_batch import event_body, freeze_event, load_object_or_array, parse_event_list

__all__ = [
    "ACKNOWLEDGED_EVENTS",
    "BLOCKED_CLASS_KINDS",
    "BLOCKED_ERROR_KINDS",
    "EVENT_KINDS",
    "EXPECTED",
    "parse_mailjet",
]

K = BounceKind
PROVIDER = "mailjet"
EXPECTED = "Mailjet posts a JSON object or a JSON array of events"

#: Events whose kind depends on nothing else: event -> (kind, description).
EVENT_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "spam": (K.COMPLAINT, "The recipient reported the message as spam"),
    "unsub": (K.UNSUBSCRIBE, "The recipient unsubscribed"),
}
#: Documented events that are not bounces: answered 200, never dispatched. Any event
#: Mailjet adds later is acknowledged the same way.
ACKNOWLEDGED_EVENTS = frozenset({"sent", "open", "click"})

#: ``bounce`` with ``error_related_to: "spam"`` (sender blocked, content blocked, policy
#: issue): the receiving server refused the sender or the content, whatever
#: ``hard_bounce`` says. A temporary class (below) is soft whatever it says too. Any
#: other class (recipient, domain; or a value outside Mailjet's table, such as a
#: captured ``"policy issue"``) goes by ``hard_bounce``.
SPAM_CLASS = "spam"
BLOCKED_BOUNCE = (K.BLOCKED, "The receiving server blocked the sender or the content")
HARD_BOUNCE = (K.HARD, "The receiving server rejected the message permanently")
SOFT_BOUNCE = (K.SOFT, "The receiving server refused the message for now")
#: ``hard_bounce`` absent: Mailjet did not say whether the bounce is permanent.
UNKNOWN_BOUNCE = (K.UNKNOWN, "The message bounced")
#: Appended to a bounce's description when it carries ``blocked: true``.
NOW_BLOCKED = "; Mailjet now blocks this address"
#: Mailjet's error table calls these temporary: the ``system`` class (system, protocol
#: and connection issues on Mailjet's side: "never be permanent") and ``greylisted``
#: ("Delivery will be re-attempted"). Soft on a bounce and on a blocked event alike.
TEMPORARY_CLASS = "system"
TEMPORARY_ERRORS = frozenset({"greylisted", "system issue", "protocol issue", "connection issue"})
SYSTEM_BOUNCE = (K.SOFT, "The message bounced on a temporary problem at Mailjet")
GREYLISTED_BOUNCE = (K.SOFT, "The receiving server greylisted the message; Mailjet retries")

#: ``blocked`` events (Mailjet did not send) by ``error`` (lower case). None: acknowledged.
BLOCKED_ERROR_KINDS: Mapping[str, tuple[BounceKind, str] | None] = {
    "duplicate in campaign": None,  # the address was twice in one campaign: sent once
    "preblocked": (K.SUPPRESSED, "Not sent: Mailjet pre-blocked the address"),
    "blacklisted": (K.SUPPRESSED, "Not sent: the address is on Mailjet's blocklist"),
    "spam reporter": (K.SUPPRESSED, "Not sent: the recipient reported spam before"),
    "user unknown": (K.SUPPRESSED, "Not sent: the address bounced as unknown before"),
    "bad or empty template": (K.ERROR, "Not sent: the template is empty or invalid"),
    "error in template language": (K.ERROR, "Not sent: the template language has an error"),
    "greylisted": (K.SOFT, "Not sent yet: the receiving server greylisted it (temporary)"),
    "system issue": (K.SOFT, "Not sent: a temporary problem at Mailjet"),
    "protocol issue": (K.SOFT, "Not sent: a temporary protocol problem at Mailjet"),
    "connection issue": (K.SOFT, "Not sent: a temporary connection problem at Mailjet"),
}
#: ``blocked`` events whose error is not listed, by ``error_related_to`` (lower case).
BLOCKED_CLASS_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    # The address itself (or its domain, or Mailjet's list of them): not sent to it.
    "recipient": (K.SUPPRESSED, "Not sent: Mailjet blocked the address"),
    "domain": (K.SUPPRESSED, "Not sent: Mailjet blocked the address's domain"),
    "mailjet": (K.SUPPRESSED, "Not sent: Mailjet blocked the address"),
    # The sender or the content, not the address.
    "spam": (K.BLOCKED, "Not sent: Mailjet blocked the sender or the content as spam"),
    "content": (K.ERROR, "Not sent: Mailjet refused the message's content"),
    TEMPORARY_CLASS: (K.SOFT, "Not sent: a temporary problem at Mailjet"),
}
#: Any other ``blocked`` event (no class, or one outside Mailjet's table): Mailjet did not
#: say why, which is not enough to flag the address.
OTHER_BLOCKED = (K.UNKNOWN, "Not sent: Mailjet blocked the message without a known reason")
#: The name acknowledged for ``blocked`` / ``duplicate in campaign``.
DUPLICATE = "duplicate_in_campaign"

#: String fields that decide the kind or identify the event: any other JSON type there
#: (null aside) refuses the event. ``comment`` and ``source`` only describe it: one of
#: another type is left in ``raw``.
_STRING_FIELDS = ("email", "error", "error_related_to")
#: Flags read to pick the kind: booleans or null.
_FLAGS = ("hard_bounce", "blocked")
#: What the sender attached at send (``X-MJ-CustomID``, ``X-MJ-EventPayload``).
_METADATA_FIELDS = ("CustomID", "Payload")


def parse_mailjet(body: bytes) -> Parsed:
    """Parse one Mailjet body: one event object, or a grouped array of events.

    An empty array is answered 200 as a handshake. In an array, each event
    becomes a :class:`~bounce_middleware.Bounce`, an acknowledged name, or a
    :class:`~bounce_middleware.providers.base.Rejection` refused alone; a
    single object that can never be accepted raises :class:`PayloadError`.
    Each Bounce's ``body`` is its event alone as ``[event]``, which this reads
    again (``bounce-middleware replay``).
    """
    data, _ = load_object_or_array(body, expected=EXPECTED)
    if type(data) is list:
        if not data:
            return Parsed(handshake="empty batch: no events")
        return parse_event_list(data, body, read_event)
    try:  # load_json_object refused a lone UTF-16 surrogate anywhere in it
        outcome = read_event(data, False)
    except RecursionError:
        raise PayloadError("event is nested too deeply") from None
    if isinstance(outcome, str):
        return Parsed(acknowledged=(outcome,))
    return Parsed((outcome,))


def read_event(item: Any, check_surrogates: bool) -> Bounce | str:
    """One decoded event: a Bounce to dispatch, or the name of an acknowledged event."""
    if type(item) is not MappingProxyType:
        raise not_an_object(item)
    data: Mapping[str, Any] = item
    get = data.get
    event = get("event")
    if event is None:
        raise PayloadError("required field event is missing")
    if type(event) is not str:
        raise PayloadError(f"field event must be a string, not {a(event)}")
    name = event.lower()
    if name not in EVENT_KINDS and name != "bounce" and name != "blocked":
        return name  # sent, open, click, and whatever Mailjet adds later
    check_strings(data, _STRING_FIELDS)
    for field in _FLAGS:
        value = get(field)
        if value is not None and type(value) is not bool:
            raise PayloadError(f"field {field} must be a boolean, not {a(value)}")
    if name == "bounce":
        rule = _bounce_rule(data)
    elif name == "blocked":
        found = _blocked_rule(data)
        if found is None:
            return DUPLICATE
        rule = found
    else:
        rule = EVENT_KINDS[name]
    email = get("email")
    if not email:
        raise PayloadError("required field email is missing or empty")
    message_id = _message_id(data)
    stamp = get("time")
    # Integer Unix seconds, as Mailjet documents them: a float here lost precision.
    bounced_at = unix_time(
        stamp, "time", floats=False, since_1970=True, expected="an integer Unix time"
    )
    data = freeze_event(data, check_surrogates=check_surrogates)
    kind, description = rule
    if name == "bounce" and get("blocked") is True:
        description += NOW_BLOCKED
    comment = _text(get("comment"))
    return Bounce(
        provider=PROVIDER,
        id=None,
        email=email,
        kind=kind,
        type=name,
        bounced_at=bounced_at,
        message_id=message_id,
        description=description,
        details=comment or get("error") or get("error_related_to") or _text(get("source")),
        smtp_status=enhanced_status(comment),
        tags=_tags(get("customcampaign")),
        metadata=_metadata(data),
        raw=data,
        dedup_id=identity_json([message_id, name, stamp, email]),
        body=event_body(data),
    )


def _bounce_rule(data: Mapping[str, Any]) -> tuple[BounceKind, str]:
    related_to = _lower(data.get("error_related_to"))
    if related_to == SPAM_CLASS:
        return BLOCKED_BOUNCE
    error = _lower(data.get("error"))
    if related_to == TEMPORARY_CLASS or error in TEMPORARY_ERRORS:
        return GREYLISTED_BOUNCE if error == "greylisted" else SYSTEM_BOUNCE
    hard = data.get("hard_bounce")
    if hard is None:
        return UNKNOWN_BOUNCE
    return HARD_BOUNCE if hard else SOFT_BOUNCE


def _blocked_rule(data: Mapping[str, Any]) -> tuple[BounceKind, str] | None:
    error = _lower(data.get("error"))
    if error in BLOCKED_ERROR_KINDS:
        return BLOCKED_ERROR_KINDS[error]
    return BLOCKED_CLASS_KINDS.get(_lower(data.get("error_related_to")), OTHER_BLOCKED)


def _lower(value: Any) -> str:
    return value.strip().lower() if type(value) is str else ""


def _text(value: Any) -> str:
    return value if type(value) is str else ""


def _message_id(data: Mapping[str, Any]) -> str | None:
    """The message id as a decimal string, whichever field holds it.

    ``MessageID`` (an integer, or its digits as a string), else the deprecated
    ``mj_message_id`` (the same digits as a string: Mailjet's grouped sample
    has only that), else ``Message_GUID``. One text for one message, so the
    de-duplication key of an event does not depend on how its id was written.
    """
    value = data.get("MessageID")
    if type(value) is int:
        return str(value)
    if value is not None and type(value) is not str:
        # A float here lost digits before it reached us: never guess the id from it.
        raise PayloadError(f"field MessageID must be an integer, not {a(value)}")
    return (
        value
        or optional_string(data, "mj_message_id")
        or optional_string(data, "Message_GUID")
        or None
    )


def _tags(campaign: Any) -> tuple[str, ...]:
    """The campaign name set at send; any other type is left in ``raw``."""
    return (campaign,) if type(campaign) is str and campaign else ()


def _metadata(data: Mapping[str, Any]) -> Mapping[str, str]:
    found = {f: v for f in _METADATA_FIELDS if type(v := data.get(f)) is str and v}
    return MappingProxyType(found) if found else EMPTY_MAPPING
