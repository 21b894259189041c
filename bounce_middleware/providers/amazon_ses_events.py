"""Amazon SES notifications (the ``Message`` of an SNS notification) -> one event per recipient.

Identity notifications name their type in ``notificationType``, event publishing
(configuration sets) in ``eventType``; the objects are otherwise the same. The
tables follow the SES developer guide ("Contents of notifications", "Contents
of event data"); see ``docs/providers.md``, section 3, in the project.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind

from .base import Parsed, Rejection, load_json_object

K = BounceKind

#: The provider name: the prefix of every event key (Bounce.key digests the rest).
PROVIDER = "amazon_ses"

#: ``(bounceType, bounceSubType)`` -> kind.
BOUNCE_KINDS: Mapping[tuple[str, str], BounceKind] = MappingProxyType(
    {
        ("Permanent", "General"): K.HARD,
        ("Permanent", "NoEmail"): K.HARD,
        ("Permanent", "Suppressed"): K.SUPPRESSED,
        ("Permanent", "OnAccountSuppressionList"): K.SUPPRESSED,
        ("Transient", "General"): K.SOFT,  # auto-replies arrive as this too
        ("Transient", "MailboxFull"): K.SOFT,
        ("Transient", "MessageTooLarge"): K.SOFT,
        ("Transient", "ContentRejected"): K.BLOCKED,
        ("Transient", "AttachmentRejected"): K.BLOCKED,
        ("Undetermined", "Undetermined"): K.UNKNOWN,
    }
)
#: ``bounceType`` -> kind, for a subtype SES adds after this table was written.
BOUNCE_TYPE_KINDS: Mapping[str, BounceKind] = MappingProxyType(
    {"Permanent": K.HARD, "Transient": K.SOFT, "Undetermined": K.UNKNOWN}
)
#: ``complaintSubType`` -> kind, deciding before the feedback type (SES sent nothing).
COMPLAINT_SUBTYPE_KINDS: Mapping[str, BounceKind] = MappingProxyType(
    {"OnAccountSuppressionList": K.SUPPRESSED}
)
#: ``complaintFeedbackType`` values that withdraw a complaint: acknowledged, not dispatched.
NOT_COMPLAINTS = frozenset({"not-spam"})
#: Event types whose kind depends on no field.
EVENT_KINDS: Mapping[str, BounceKind] = MappingProxyType(
    {"DeliveryDelay": K.SOFT, "Reject": K.ERROR, "Rendering Failure": K.ERROR}
)
#: ``subscriptionStatus`` of a contact-list topic -> kind (Subscription events).
SUBSCRIPTION_KINDS: Mapping[str, BounceKind] = MappingProxyType(
    {"OptOut": K.UNSUBSCRIBE, "OptIn": K.SUBSCRIBE}
)
#: Not bounces: answered 200 and acknowledged, never dispatched.
ACKNOWLEDGED = frozenset({"Delivery", "Send", "Open", "Click", "Received"})
#: Sent once when an identity's notification topic is set up: a handshake.
SETUP_NOTICES = frozenset({"AmazonSnsSubscriptionSucceeded"})


#: Event types with a list of recipients: the object and the list holding them.
RECIPIENT_LISTS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "Bounce": ("bounce", "bouncedRecipients"),
        "Complaint": ("complaint", "complainedRecipients"),
        "DeliveryDelay": ("deliveryDelay", "delayedRecipients"),
    }
)
#: Event types about the whole message: the object, and every ``mail.destination`` affected.
MESSAGE_EVENTS: Mapping[str, str] = MappingProxyType(
    {"Reject": "reject", "Rendering Failure": "failure", "Subscription": "subscription"}
)

# What a notification's object says: its kind (None: acknowledged), description, details.
_Reading = tuple[BounceKind | None, str, str | None]


def parse_ses_message(message: str, *, message_id: str, sns_time: object, body: bytes) -> Parsed:
    """The events of one SES notification (an SNS ``Message``); PayloadError if it is none.

    One event per recipient, its ``dedup_id`` ``<MessageId>:<address>`` (SNS keeps
    ``MessageId`` across its retries). ``sns_time`` is the envelope's
    ``Timestamp``, used when the event has no time of its own; ``body`` is the
    whole request, kept on every event for ``replay``. ``raw`` is the
    notification as its recipient sees it: the recipient list narrowed to them.
    """
    try:
        ses = load_json_object(message.encode("utf-8"))
    except PayloadError as error:
        # The reasons say "body is ...": here it is the Message inside the body.
        reason = error.reason.removeprefix("body ")
        raise PayloadError(f"the SNS Message is not an SES notification: it {reason}") from None
    event_type = ses.get("eventType", ses.get("notificationType"))
    if type(event_type) is not str:
        raise PayloadError("the SES notification has no eventType or notificationType string")
    if event_type in ACKNOWLEDGED:
        return Parsed(acknowledged=(event_type,))
    if event_type in SETUP_NOTICES:
        return Parsed(handshake="SES notifications to this topic are set up")
    listed = RECIPIENT_LISTS.get(event_type)
    section_name = listed[0] if listed else MESSAGE_EVENTS.get(event_type)
    if section_name is None:
        raise PayloadError("the SES notification's event type is not one this version knows")
    section = ses.get(section_name)
    if not isinstance(section, Mapping):
        raise PayloadError(f"the SES {event_type} notification has no {section_name} object")
    kind, description, details = _READERS[event_type](section, section_name)
    if kind is None:
        return Parsed(acknowledged=(event_type,))
    mail = ses.get("mail")
    mail = mail if isinstance(mail, Mapping) else EMPTY_MAPPING
    bounced_at = moment(section.get("timestamp")) or moment(sns_time)
    mail_id = _text(mail, "messageId", "mail")
    metadata = _metadata(mail)

    def event(
        email: str, kind: BounceKind, details: object, status: str | None, raw: Mapping[str, Any]
    ) -> Bounce:
        return Bounce(
            provider=PROVIDER,
            id=message_id,
            # One SNS message covers several recipients: the address tells them apart.
            dedup_id=f"{message_id}:{email}",
            email=email,
            kind=kind,
            type=event_type,
            bounced_at=bounced_at,
            message_id=mail_id,
            description=description,
            details=details if type(details) is str else "",
            smtp_status=status,
            metadata=metadata,
            raw=raw,
            body=body,
        )

    if listed is None:
        return Parsed(
            tuple(event(email, kind, details, None, ses) for email in _destinations(mail))
        )
    events = []
    refused: list[str] = []
    for entry, raw in _recipients(ses, section, *listed):
        try:
            email = _address(entry, *listed)
        except PayloadError as error:
            refused.append(error.reason)
            continue
        status = entry.get("status")
        status = status if type(status) is str and status else None
        entry_kind = _recipient_kind(kind, entry.get("action"), status)
        events.append(event(email, entry_kind, entry.get("diagnosticCode"), status, raw))
    if not refused:
        return Parsed(tuple(events))
    if not events:
        raise PayloadError(refused[0])
    # One bad entry must not cost the others: SNS counts the 400 as delivered and never
    # sends them again. The good ones are dispatched; the notification is kept as one
    # rejected record, whose body (the whole request) replay refuses again for this reason.
    if len(refused) > 1:
        refused[0] = f"{len(refused)} recipient entries refused, the first: {refused[0]}"
    return Parsed(tuple(events), rejected=(Rejection(body, refused[0]),))


def _recipient_kind(kind: BounceKind, action: object, status: str | None) -> BounceKind:
    # A Permanent bounce may list a recipient SES is still trying (a documented
    # example holds one): that recipient's own status class wins.
    if kind is K.HARD and (action == "delayed" or (status is not None and status[:1] == "4")):
        return K.SOFT
    return kind


def _bounce(bounce: Mapping[str, Any], name: str) -> _Reading:
    bounce_type = _text(bounce, "bounceType", name) or ""
    sub_type = _text(bounce, "bounceSubType", name) or ""
    kind = BOUNCE_KINDS.get((bounce_type, sub_type))
    if kind is None:
        kind = BOUNCE_TYPE_KINDS.get(bounce_type, K.UNKNOWN)
    return kind, f"{bounce_type or 'Unknown'} bounce ({sub_type or 'no subtype'})", None


def _complaint(complaint: Mapping[str, Any], name: str) -> _Reading:
    sub_type = _text(complaint, "complaintSubType", name)
    feedback = _text(complaint, "complaintFeedbackType", name)
    kind = COMPLAINT_SUBTYPE_KINDS.get(sub_type or "")
    if kind is not None:
        return kind, f"Not sent: {sub_type}", None
    if feedback in NOT_COMPLAINTS:
        return None, "", None
    return K.COMPLAINT, f"Complaint ({feedback})" if feedback else "Complaint", None


def _delivery_delay(delay: Mapping[str, Any], name: str) -> _Reading:
    delay_type = _text(delay, "delayType", name)
    return K.SOFT, f"Delivery delayed ({delay_type})" if delay_type else "Delivery delayed", None


def _reject(reject: Mapping[str, Any], name: str) -> _Reading:
    return K.ERROR, "Rejected by SES before sending", _text(reject, "reason", name)


def _rendering_failure(failure: Mapping[str, Any], name: str) -> _Reading:
    template = _text(failure, "templateName", name)
    description = f"Template {template} failed to render" if template else "Rendering failed"
    return K.ERROR, description, _text(failure, "errorMessage", name)


def _subscription(subscription: Mapping[str, Any], name: str) -> _Reading:
    preferences = subscription.get("newTopicPreferences")
    preferences = preferences if isinstance(preferences, Mapping) else EMPTY_MAPPING
    if preferences.get("unsubscribeAll") is True:
        return K.UNSUBSCRIBE, "Unsubscribed from every topic", None
    statuses = preferences.get("topicSubscriptionStatus")
    opted_out = [
        topic
        for topic in (statuses if isinstance(statuses, tuple) else ())
        if isinstance(topic, Mapping) and topic.get("subscriptionStatus") == "OptOut"
    ]
    # Out of one topic and into another is still an opt-out to honour.
    if opted_out:
        return SUBSCRIPTION_KINDS["OptOut"], f"Opted out of {len(opted_out)} topic(s)", None
    return SUBSCRIPTION_KINDS["OptIn"], "Opted in", None


_READERS: Mapping[str, Callable[[Mapping[str, Any], str], _Reading]] = MappingProxyType(
    {
        "Bounce": _bounce,
        "Complaint": _complaint,
        "DeliveryDelay": _delivery_delay,
        "Reject": _reject,
        "Rendering Failure": _rendering_failure,
        "Subscription": _subscription,
    }
)


def _recipients(
    ses: Mapping[str, Any], section: Mapping[str, Any], name: str, field: str
) -> list[tuple[Any, Mapping[str, Any]]]:
    """Each recipient entry, with the notification narrowed to that entry (its ``raw``).

    An entry may be anything JSON holds: :func:`_address` refuses one that is no object.
    """
    entries = section.get(field)
    if not isinstance(entries, tuple) or not entries:
        raise PayloadError(f"the SES {name} lists no {field}")
    if len(entries) == 1:
        return [(entries[0], ses)]
    return [
        (entry, MappingProxyType({**ses, name: MappingProxyType({**section, field: (entry,)})}))
        for entry in entries
    ]


def _destinations(mail: Mapping[str, Any]) -> list[str]:
    destination = mail.get("destination")
    if not isinstance(destination, tuple) or not destination:
        raise PayloadError("the SES notification's mail.destination lists no address")
    if not all(type(item) is str and item.strip() for item in destination):
        raise PayloadError("an entry of mail.destination is not an address")
    return [_clean(item) for item in destination]


def _address(entry: Any, name: str, field: str) -> str:
    """A recipient entry's address; PayloadError for an entry that is no recipient."""
    if not isinstance(entry, Mapping):
        raise PayloadError(f"an entry of {name}.{field} is not an object")
    value = entry.get("emailAddress")
    if type(value) is not str or not value.strip():
        raise PayloadError("a recipient entry has no emailAddress string")
    return _clean(value)


def _clean(value: str) -> str:
    """``Ann <ann@example.com>`` (as ``mail.destination`` may hold) -> ``ann@example.com``."""
    value = value.strip()
    if value.endswith(">") and "<" in value:
        inner = value[value.rindex("<") + 1 : -1].strip()
        if inner:
            return inner
    return value


def _text(data: Mapping[str, Any], name: str, section: str) -> str | None:
    value = data.get(name)
    if value is None or type(value) is str:
        return value
    raise PayloadError(f"field {section}.{name} is not a string")


def _metadata(mail: Mapping[str, Any]) -> Mapping[str, str]:
    """``mail.tags`` (``{"name": ["value"]}``) as name -> value, several values joined by ",".

    SES's own tags (``ses:configuration-set``, ``ses:from-domain``...) are
    included. SES allows no comma in a tag value, so the join is unambiguous.
    """
    tags = mail.get("tags")
    if not isinstance(tags, Mapping) or not tags:
        return EMPTY_MAPPING
    flat: dict[str, str] = {}
    for name, values in tags.items():
        if type(values) is str:
            flat[name] = values
        elif isinstance(values, tuple) and all(type(v) is str for v in values):
            flat[name] = ",".join(values)
    return MappingProxyType(flat)


def moment(value: object) -> datetime | None:
    """An aware datetime from an SES/SNS time, or None when absent or unreadable.

    Never raises: a time SES wrote oddly must not cost the event (one docs
    example writes ``2018-10-08T14:05:45 +0000``, which Python 3.11 reads).
    """
    if type(value) is not str or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)  # SES and SNS write UTC
    if parsed.year == 1 or parsed.year == 9999:
        # An offset can push the calendar's ends out of range in UTC, and a handler
        # calling astimezone() would then fail on every retry: treat it as absent.
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            return None
    return parsed
