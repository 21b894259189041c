"""SparkPost events into Bounces: the kind tables and the reading of one ``msys`` element.

Each element of a SparkPost batch is ``{"msys": {"<class>": {...event...}}}``
with exactly one event class (``message_event``, ``track_event``,
``unsubscribe_event``, ``gen_event``, ``relay_message``...); the event's
``type`` names what happened, whatever its class. ``bounce`` and
``out_of_band`` are classified by ``bounce_class``, after SparkPost's
bounce classification codes (``docs/providers.md``, "SparkPost").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import holds_surrogate
from .fields import a, check_strings, enhanced_status, identity_json, not_an_object, unix_time
from .json_batch import event_body, freeze_event

K = BounceKind

#: SparkPost's bounce classification codes: ``bounce_class`` -> (kind, what it means).
#: SparkPost itself suppresses only on Hard and Admin; Soft, Block and Undetermined are
#: usually temporary, which their kinds say (not permanent).
BOUNCE_CLASSES: Mapping[str, tuple[BounceKind, str]] = {
    "1": (K.UNKNOWN, "Undetermined bounce"),
    "10": (K.HARD, "Invalid recipient"),
    "20": (K.SOFT, "Soft bounce"),
    "21": (K.SOFT, "DNS failure"),
    "22": (K.SOFT, "Mailbox full"),
    "23": (K.SOFT, "Message too large"),
    "24": (K.SOFT, "Timeout"),
    "25": (K.SUPPRESSED, "Admin failure: refused by SparkPost's policy"),
    "30": (K.HARD, "Generic bounce: no RCPT"),
    "40": (K.SOFT, "Generic bounce"),
    "50": (K.BLOCKED, "Mail block"),
    "51": (K.BLOCKED, "Spam block"),
    "52": (K.BLOCKED, "Spam content"),
    "53": (K.BLOCKED, "Prohibited attachment"),
    "54": (K.BLOCKED, "Relaying denied"),
    "60": (K.AUTO_REPLY, "Auto-reply"),
    "70": (K.SOFT, "Transient failure"),
    "80": (K.SUBSCRIBE, "Subscribe request"),
    "90": (K.UNSUBSCRIBE, "Unsubscribe request"),
    "100": (K.AUTO_REPLY, "Challenge-response"),
}
#: The events classified by ``bounce_class``, and how their descriptions begin.
CLASSIFIED_EVENTS: Mapping[str, str] = {"bounce": "Bounce", "out_of_band": "Out-of-band bounce"}

#: Events whose kind depends on nothing else: type -> (kind, description). Any type
#: not here and not classified (injection, delivery, open, click, amp_*, relay_*...)
#: is acknowledged and never dispatched.
EVENT_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "delay": (K.SOFT, "Delivery delayed; SparkPost keeps trying (not final)"),
    "policy_rejection": (K.SUPPRESSED, "Not sent: SparkPost's policy refused the message"),
    "spam_complaint": (K.COMPLAINT, "The recipient reported the message as spam"),
    "list_unsubscribe": (K.UNSUBSCRIBE, "The recipient unsubscribed (List-Unsubscribe header)"),
    "link_unsubscribe": (K.UNSUBSCRIBE, "The recipient unsubscribed (link in the message)"),
    "generation_failure": (K.ERROR, "Not sent: SparkPost failed to generate the message"),
    "generation_rejection": (K.ERROR, "Not sent: SparkPost rejected the message at generation"),
}
#: ``fbtype`` of a ``spam_complaint`` that says the message is not spam: acknowledged.
NOT_SPAM = "not-spam"
#: The feedback types of RFC 5965 named in a complaint's description.
FEEDBACK_TYPES = frozenset({"abuse", "fraud", "virus", "other"})
#: The acknowledged name of a ``spam_complaint`` whose ``fbtype`` is ``not-spam``.
NOT_SPAM_ACK = "spam_complaint_not_spam"
#: Inbound relay events carry no ``type``; acknowledged by their class.
RELAY_CLASS = "relay_message"
#: The acknowledged name of an empty ``{"msys": {}}`` element inside a batch of events.
PING_ACK = "ping"

#: Fields copied into a Bounce must be strings (ids may be integer-like); the others
#: (tags, metadata, fbtype) only add to it, and what is unreadable there stays in ``raw``.
_STRING_FIELDS = ("raw_rcpt_to", "rcpt_to", "raw_reason", "reason")
#: ``error_code`` (the SMTP reply code, "554", or SparkPost's own, "1902") is not read:
#: it stays in ``raw``; ``smtp_status`` is the enhanced status code of ``raw_reason``.
_ID_FIELDS = ("event_id", "transmission_id", "message_id")
_MAX_CLASS_DIGITS = 6


def is_ping(item: Any) -> bool:
    """Whether one element of a batch is SparkPost's test ping, ``{"msys": {}}``."""
    if type(item) is not MappingProxyType:
        return False
    msys = item.get("msys")
    return type(msys) is MappingProxyType and not msys


def read_event(item: Any, check_surrogates: bool, received: bytes | None = None) -> Bounce | str:
    """One ``{"msys": {...}}`` element: a Bounce, or the name of an acknowledged event.

    ``received``: the body as received when it holds this element alone, kept
    as the Bounce's ``body`` instead of writing the element out again. Raises
    :class:`PayloadError` to refuse this element alone.
    """
    if type(item) is not MappingProxyType:
        raise not_an_object(item)
    msys = item.get("msys")
    if msys is None:
        raise PayloadError("required field msys is missing")
    if type(msys) is not MappingProxyType:
        raise PayloadError(f"field msys must be an object, not {a(msys)}")
    if not msys:
        return PING_ACK
    if len(msys) != 1:
        raise PayloadError(f"field msys holds {len(msys)} event classes; SparkPost sends one")
    [(event_class, event)] = msys.items()
    if type(event) is not MappingProxyType:
        raise PayloadError(f"the event in msys is {a(event)}, not an object")
    data: Mapping[str, Any] = event
    event_type = data.get("type")
    if event_type is None:
        if event_class == RELAY_CLASS:
            return RELAY_CLASS  # inbound mail (no type): this route's concern is bounces
        raise PayloadError("required field type is missing")
    if type(event_type) is not str:
        raise PayloadError(f"field type must be a string, not {a(event_type)}")
    name = event_type.lower()
    if name in CLASSIFIED_EVENTS:
        kind, description = _classified(CLASSIFIED_EVENTS[name], data.get("bounce_class"))
    else:
        rule = EVENT_KINDS.get(name)
        if rule is None:
            return event_type
        kind, description = rule
        if name == "spam_complaint":
            fbtype = data.get("fbtype")
            if type(fbtype) is str and fbtype.strip().lower() == NOT_SPAM:
                return NOT_SPAM_ACK
            if type(fbtype) is str and fbtype.lower() in FEEDBACK_TYPES:
                description += f" ({fbtype.lower()} feedback report)"
        elif name in ("delay", "policy_rejection"):
            description += _class_note(data.get("bounce_class"), meaning=name == "delay")
    return _bounce(item, data, event_type, kind, description, check_surrogates, received)


def _bounce(
    item: Mapping[str, Any],
    data: Mapping[str, Any],
    event_type: str,
    kind: BounceKind,
    description: str,
    check_surrogates: bool,
    received: bytes | None,
) -> Bounce:
    get = data.get
    check_strings(data, _STRING_FIELDS)
    ids = {field: _id_text(field, get(field)) for field in _ID_FIELDS}
    email = get("raw_rcpt_to") or get("rcpt_to")
    if not email:
        raise PayloadError("required field rcpt_to is missing or empty")
    # Unix seconds as a digit string, as SparkPost sends it (a number is accepted too).
    bounced_at = unix_time(get("timestamp"), "timestamp", digit_strings=True)
    if check_surrogates and holds_surrogate(item):
        raise PayloadError("event holds an unpaired UTF-16 surrogate escape")
    raw = freeze_event(data, check_surrogates=False)
    event_id = ids["event_id"]
    details = get("raw_reason") or get("reason") or ""
    return Bounce(
        provider="sparkpost",
        id=event_id,
        email=email,
        kind=kind,
        type=event_type,
        bounced_at=bounced_at,
        message_id=ids["transmission_id"],
        description=description,
        details=details,
        smtp_status=enhanced_status(details),
        tags=_tags(raw),
        metadata=_metadata(get("rcpt_meta")),
        raw=raw,
        # With event_id too: SparkPost's own samples repeat one event_id across a batch's
        # distinct events, which that id alone would dispatch once.
        dedup_id=_dedup_id(ids, event_type, get("timestamp"), data, email),
        body=event_body(item) if received is None else received,
    )


def _classified(noun: str, bounce_class: Any) -> tuple[BounceKind, str]:
    """A ``bounce`` or ``out_of_band`` event's kind and description, by its ``bounce_class``."""
    code = _class_code(bounce_class)
    if code is None:
        return K.UNKNOWN, f"{noun} without a readable SparkPost bounce class"
    rule = BOUNCE_CLASSES.get(code)
    if rule is None:
        return K.UNKNOWN, f"{noun} of an unlisted SparkPost bounce class ({code})"
    kind, meaning = rule
    if noun != "Bounce":
        meaning = f"{noun}: {_lower(meaning)}"
    return kind, f"{meaning} (SparkPost bounce class {code})"


def _class_note(bounce_class: Any, *, meaning: bool) -> str:
    """What a ``delay`` (its class's ``meaning`` too) or ``policy_rejection`` adds: its class."""
    code = _class_code(bounce_class)
    if code is None:
        return ""
    rule = BOUNCE_CLASSES.get(code)
    if rule is None or not meaning:
        return f" (SparkPost bounce class {code})"
    return f": {_lower(rule[1])} (SparkPost bounce class {code})"


def _lower(text: str) -> str:
    """A description continued after a colon: its first letter in lower case, unless an acronym."""
    return text if text[1:2].isupper() else text[:1].lower() + text[1:]


def _class_code(bounce_class: Any) -> str | None:
    """``bounce_class`` as the digits of a code (a string; an integer accepted), or None.

    Only digits reach a description: the text is ours, and a log may show it.
    """
    if type(bounce_class) is int and bounce_class >= 0:
        bounce_class = str(bounce_class)
    if type(bounce_class) is not str:
        return None
    code = bounce_class.strip()
    if not code.isascii() or not code.isdigit() or len(code) > _MAX_CLASS_DIGITS:
        return None
    return str(int(code))  # "010" is class 10


def _id_text(field: str, value: Any) -> str | None:
    """An id field: a string (empty = absent), or an integer as SparkPost's ids look."""
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise PayloadError(f"field {field} must be a string, not {a(value)}")


def _tags(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """``rcpt_tags`` (the recipient's tags), then ``campaign_id``.

    django-anymail sends a message's tag as the ``campaign_id``. Liberal:
    anything in ``rcpt_tags`` that is not a string stays in ``raw`` only.
    """
    tags: list[str] = []
    found = raw.get("rcpt_tags")
    if type(found) is str and found:
        tags.append(found)
    elif type(found) is tuple:
        tags.extend(tag for tag in found if type(tag) is str and tag)
    campaign = raw.get("campaign_id")
    if type(campaign) is str and campaign and campaign not in tags:
        tags.append(campaign)
    return tuple(tags)


def _metadata(meta: Any) -> Mapping[str, str]:
    """The string values of ``rcpt_meta``; other values stay in ``raw`` only."""
    if type(meta) is not MappingProxyType:
        return EMPTY_MAPPING
    found = {key: value for key, value in meta.items() if type(value) is str}
    return MappingProxyType(found) if found else EMPTY_MAPPING


def _dedup_id(
    ids: Mapping[str, str | None],
    event_type: str,
    timestamp: Any,
    data: Mapping[str, Any],
    email: str,
) -> str:
    """What identifies an event beside ``event_id``: message, type, time and recipient.

    The key holds only its digest (:attr:`Bounce.key`), so no address is logged.
    """
    message = ids["message_id"] or ids["transmission_id"]
    recipient = data.get("rcpt_to") or email
    return identity_json([message, event_type, timestamp, recipient])
