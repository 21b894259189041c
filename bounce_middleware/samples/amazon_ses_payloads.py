"""Amazon SES notifications as SES puts them in an SNS ``Message``: bounces, complaints...

Factories return plain dicts (the decoded notification); :mod:`.amazon_ses`
wraps them in signed SNS messages. Each takes ``email=`` and keyword arguments
that add or replace top-level parts (``tags=`` sets ``mail.tags``); times are now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "SES_KINDS",
    "ses_bounce",
    "ses_complaint",
    "ses_delivery_delay",
    "ses_event",
    "ses_notification",
]

#: SES's own id of the sample message (``mail.messageId``).

_MESSAGE_ID = "0100018c1f9a7b2e-5f1e8a44-1b7c-4d2e-9a33-6f0f5c1d2e3f-000000"


def now() -> str:
    """Now, as SES and SNS write times (UTC, milliseconds, ``Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _mail(recipients: list[str], tags: Mapping[str, list[str]] | None) -> dict[str, Any]:
    return {
        "timestamp": now(),
        "source": "sender@example.com",
        "sendingAccountId": "123456789012",
        "messageId": _MESSAGE_ID,
        "destination": recipients,
        "headersTruncated": False,
        "commonHeaders": {"from": ["sender@example.com"], "to": recipients, "subject": "Hello"},
        "tags": dict(tags) if tags is not None else {"ses:configuration-set": ["bounces"]},
    }


def _notification(
    event_type: str, recipients: list[str], type_field: str, **parts: Any
) -> dict[str, Any]:
    # tags= sets mail.tags (SES's message tags, {"name": ["value"]}); the rest are top-level.
    tags = parts.pop("tags", None)
    return {type_field: event_type, "mail": _mail(recipients, tags), **parts}


def ses_bounce(
    bounce_type: str = "Permanent",
    sub_type: str = "General",
    *,
    email: str = "ann@example.com",
    recipients: list[dict[str, Any]] | None = None,
    type_field: str = "eventType",
    **parts: Any,
) -> dict[str, Any]:
    """An SES ``Bounce`` notification; ``recipients`` replaces the one bounced recipient.

    ``type_field="notificationType"`` gives an identity notification's shape
    (no configuration set); other keyword arguments add or replace top-level parts.
    """
    permanent = bounce_type == "Permanent"
    entries = recipients or [
        {
            "emailAddress": email,
            "action": "failed" if permanent else "delayed",
            "status": "5.1.1" if permanent else "4.2.2",
            "diagnosticCode": "smtp; 550 5.1.1 user unknown"
            if permanent
            else "smtp; 452 4.2.2 full",
        }
    ]
    bounce = {
        "bounceType": bounce_type,
        "bounceSubType": sub_type,
        "bouncedRecipients": entries,
        "timestamp": now(),
        "feedbackId": "0100018c1f9a7c11-feedback-000000",
        "reportingMTA": "dsn; a8-12.smtp-out.amazonses.com",
    }
    addresses = [e.get("emailAddress", "") for e in entries]
    return _notification("Bounce", addresses, type_field, bounce=bounce, **parts)


def ses_complaint(
    feedback_type: str | None = "abuse",
    *,
    email: str = "ann@example.com",
    sub_type: str | None = None,
    type_field: str = "eventType",
    **parts: Any,
) -> dict[str, Any]:
    """An SES ``Complaint`` notification (``sub_type="OnAccountSuppressionList"``: not sent)."""
    complaint: dict[str, Any] = {
        "complaintSubType": sub_type,
        "complainedRecipients": [{"emailAddress": email}],
        "timestamp": now(),
        "feedbackId": "0100018c1f9a7c11-complaint-000000",
    }
    if feedback_type is not None:
        complaint.update(complaintFeedbackType=feedback_type, userAgent="Mailbox Provider FBL")
    return _notification("Complaint", [email], type_field, complaint=complaint, **parts)


def ses_delivery_delay(*, email: str = "ann@example.com", **parts: Any) -> dict[str, Any]:
    """An SES ``DeliveryDelay`` event (SES keeps trying: soft, not final)."""
    delay = {
        "delayType": "TransientCommunicationFailure",
        "expirationTime": now(),
        "delayedRecipients": [
            {"emailAddress": email, "status": "4.4.1", "diagnosticCode": "smtp; 421 4.4.1 busy"}
        ],
        "timestamp": now(),
    }
    return _notification("DeliveryDelay", [email], "eventType", deliveryDelay=delay, **parts)


def ses_event(event_type: str, *, email: str = "ann@example.com", **parts: Any) -> dict[str, Any]:
    """Any other SES event by its type: Reject, Rendering Failure, Subscription, Delivery..."""
    defaults: dict[str, dict[str, Any]] = {
        "Reject": {"reject": {"reason": "Bad content"}},
        "Rendering Failure": {
            "failure": {"templateName": "welcome", "errorMessage": "Attribute 'name' is missing"}
        },
        "Subscription": {
            "subscription": {
                "contactList": "news",
                "timestamp": now(),
                "source": "UnsubscribeHeader",
                "newTopicPreferences": {
                    "unsubscribeAll": False,
                    "topicSubscriptionStatus": [
                        {"topicName": "weekly", "subscriptionStatus": "OptOut"}
                    ],
                },
            }
        },
        "Delivery": {
            "delivery": {"timestamp": now(), "recipients": [email], "smtpResponse": "250 ok"}
        },
        "Open": {
            "open": {"timestamp": now(), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}
        },
    }
    return _notification(
        event_type, [email], "eventType", **{**defaults.get(event_type, {}), **parts}
    )


def _subscription_change(opt: str) -> Callable[..., dict[str, Any]]:
    def make(*, email: str = "ann@example.com", **parts: Any) -> dict[str, Any]:
        notification = ses_event("Subscription", email=email, **parts)
        status = notification["subscription"]["newTopicPreferences"]["topicSubscriptionStatus"]
        status[0]["subscriptionStatus"] = opt
        return notification

    return make


#: Sample kinds by the name ``send --provider amazon_ses KIND`` takes (the kind each parses to).
SES_KINDS: dict[str, Callable[..., dict[str, Any]]] = {
    "hard": lambda **kw: ses_bounce("Permanent", "General", **kw),
    "soft": lambda **kw: ses_bounce("Transient", "MailboxFull", **kw),
    "blocked": lambda **kw: ses_bounce("Transient", "ContentRejected", **kw),
    "suppressed": lambda **kw: ses_bounce("Permanent", "OnAccountSuppressionList", **kw),
    "unknown": lambda **kw: ses_bounce("Undetermined", "Undetermined", **kw),
    "complaint": ses_complaint,
    "delay": ses_delivery_delay,
    "error": lambda **kw: ses_event("Reject", **kw),
    "unsubscribe": _subscription_change("OptOut"),
    "subscribe": _subscription_change("OptIn"),
    "delivery": lambda **kw: ses_event("Delivery", **kw),
}


def ses_notification(kind: str = "hard", **overrides: Any) -> dict[str, Any]:
    """An SES notification by kind name (a key of :data:`SES_KINDS`)."""
    try:
        factory = SES_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown SES sample kind {kind!r}; known: {', '.join(SES_KINDS)}"
        ) from None
    return factory(**overrides)
