"""Realistic Postmark webhook payloads, for the ``send`` command and for tests.

Every record shape Postmark posts (current and 2010-era bounces, spam
complaints, subscription changes, deliveries, opens, clicks, inbound e-mail),
with overrides, and the ``Authorization`` header to post them with. Production
code (the command line) uses them, so they live here;
:mod:`bounce_middleware.testing` re-exports them for users' test suites.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

__all__ = [
    "POSTMARK_TYPES",
    "RECORD_TYPES",
    "basic_auth_header",
    "postmark_bounce",
    "postmark_click",
    "postmark_delivery",
    "postmark_inbound",
    "postmark_legacy_bounce",
    "postmark_open",
    "postmark_payload",
    "postmark_spam_complaint",
    "postmark_subscription_change",
]

#: Postmark bounce ``Type`` -> (``TypeCode``, ``Name``, ``Description``), as Postmark
#: documents them (``tests/test_cli.py`` checks the keys against the parser's table).
POSTMARK_TYPES: dict[str, tuple[int, str, str]] = {
    "HardBounce": (
        1,
        "Hard bounce",
        "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    ),
    "Transient": (
        2,
        "Message delayed",
        "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles).",  # noqa: E501 (Postmark's text, verbatim)
    ),
    "Unsubscribe": (16, "Unsubscribe request", "Unsubscribe or Remove request."),
    "Subscribe": (
        32,
        "Subscribe request",
        "Subscribe request from someone wanting to get added to the mailing list.",
    ),
    "AutoResponder": (
        64,
        "Auto responder",
        'Automatic email responder (ex: "Out of Office" or "On Vacation").',
    ),
    "AddressChange": (128, "Address change", "The recipient has requested an address change."),
    "DnsError": (256, "DNS error", "A temporary DNS error."),
    "SpamNotification": (
        512,
        "Spam notification",
        "The message was delivered, but was either blocked by the user, or classified as spam, bulk mail, or had rejected content.",  # noqa: E501 (Postmark's text, verbatim)
    ),
    "OpenRelayTest": (
        1024,
        "Open relay test",
        "The NDR is actually a test email message to see if the mail server is an open relay.",
    ),
    "Unknown": (2048, "Unknown", "Unable to classify the NDR."),
    "SoftBounce": (
        4096,
        "Soft bounce",
        "Unable to temporarily deliver message (i.e. mailbox full, account disabled, exceeds quota, out of disk space).",  # noqa: E501 (Postmark's text, verbatim)
    ),
    "VirusNotification": (
        8192,
        "Virus notification",
        "The bounce is actually a virus notification warning about a virus/code infected message.",
    ),
    "ChallengeVerification": (
        16384,
        "Spam challenge verification",
        "The bounce is a challenge asking for verification you actually sent the email. Typcial challenges are made by Spam Arrest, or MailFrontier Matador.",  # noqa: E501 (Postmark's text, verbatim)
    ),
    "BadEmailAddress": (
        100000,
        "Invalid email address",
        "The address is not a valid email address.",
    ),
    "SpamComplaint": (
        100001,
        "Spam complaint",
        "The subscriber explicitly marked this message as spam.",
    ),
    "ManuallyDeactivated": (100002, "Manually deactivated", "The email was manually deactivated."),
    "Unconfirmed": (
        100003,
        "Registration not confirmed",
        "The subscriber has not clicked on the confirmation link upon registration or import.",
    ),
    "Blocked": (100006, "ISP block", "Blocked from this ISP due to content or blacklisting."),
    "SMTPApiError": (
        100007,
        "SMTP API error",
        "An error occurred while accepting an email through the SMTP API.",
    ),
    "InboundError": (
        100008,
        "Processing failed",
        "Unable to deliver inbound message to destination inbound hook.",
    ),
    "DMARCPolicy": (100009, "DMARC Policy", "Email rejected due DMARC Policy."),
    "TemplateRenderingFailed": (
        100010,
        "Template rendering failed",
        "An error occurred while attempting to render your template.",
    ),
}

_ids = itertools.count(4_323_372_036)


def _next_id() -> int:
    return next(_ids)


def postmark_bounce(type: str = "HardBounce", **overrides: Any) -> dict[str, Any]:
    """A current Postmark ``Bounce`` webhook payload; each call gets a new ``ID``.

    ``type`` picks the bounce Type (TypeCode, Name and Description follow it);
    keyword arguments override or add top-level fields (``ID=42``, ``Email=...``,
    or ``email=...`` as a shortcut for ``Email``).
    """
    code, name, description = POSTMARK_TYPES.get(
        type, (2048, "Unknown", "Unable to classify the NDR.")
    )
    payload: dict[str, Any] = {
        "RecordType": "SpamComplaint" if type == "SpamComplaint" else "Bounce",
        "ID": _next_id(),
        "Type": type,
        "TypeCode": code,
        "Name": name,
        "Tag": "Invitation",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": description,
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "john@example.com",
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": type in ("HardBounce", "SpamComplaint", "ManuallyDeactivated"),
        "CanActivate": type != "SpamComplaint",
        "Subject": "Please confirm your address",
        "Content": "Return-Path: <>\r\nReceived: from mail.example.com ...",
        "Metadata": {"user_id": "42", "plan": "free"},
    }
    return _override(payload, overrides, email="Email")


def postmark_legacy_bounce(type: str = "HardBounce", **overrides: Any) -> dict[str, Any]:
    """The 2010-era payload: only the twelve fields Postmark sent then."""
    code, name, description = POSTMARK_TYPES.get(
        type, (2048, "Unknown", "Unable to classify the NDR.")
    )
    payload: dict[str, Any] = {
        "ID": _next_id(),
        "Type": type,
        "TypeCode": code,
        "Name": name,
        "Tag": "",
        "Description": description,
        "Details": "test bounce",
        "Email": "john@example.com",
        "BouncedAt": "2010-06-03T21:00:19.0155096-04:00",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
    }
    return _override(payload, overrides, email="Email")


def postmark_spam_complaint(**overrides: Any) -> dict[str, Any]:
    """A ``SpamComplaint`` record (the Bounce shape with Type SpamComplaint)."""
    return postmark_bounce("SpamComplaint", **overrides)


def postmark_subscription_change(
    suppress: bool = True, reason: str | None = "HardBounce", **overrides: Any
) -> dict[str, Any]:
    """A ``SubscriptionChange`` record; ``suppress=False`` is a reactivation."""
    payload: dict[str, Any] = {
        "RecordType": "SubscriptionChange",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "ServerID": 23,
        "MessageStream": "outbound",
        "ChangedAt": "2020-02-01T10:53:34.416071Z",
        "Recipient": "john@example.com",
        "Origin": "Recipient" if suppress else "Customer",
        "SuppressSending": suppress,
        "SuppressionReason": reason if suppress else None,
        "Tag": "my-tag",
        "Metadata": {"example": "value"},
    }
    return _override(payload, overrides, email="Recipient")


def postmark_delivery(**overrides: Any) -> dict[str, Any]:
    """A ``Delivery`` record: acknowledged with 200, never dispatched."""
    payload: dict[str, Any] = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Recipient": "john@example.com",
        "Tag": "welcome-email",
        "DeliveredAt": "2021-02-21T16:34:52Z",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }
    return _override(payload, overrides, email="Recipient")


def postmark_open(**overrides: Any) -> dict[str, Any]:
    """An ``Open`` record: acknowledged with 200, never dispatched."""
    payload: dict[str, Any] = {
        "RecordType": "Open",
        "MessageStream": "outbound",
        "FirstOpen": True,
        "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
        "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
        "Platform": "WebMail",
        "UserAgent": "Mozilla/5.0",
        "Geo": {"CountryISOCode": "RS", "Country": "Serbia"},
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Metadata": {},
        "ReceivedAt": "2019-11-05T16:33:54.9070259Z",
        "Tag": "welcome-email",
        "Recipient": "john@example.com",
    }
    return _override(payload, overrides, email="Recipient")


def postmark_click(**overrides: Any) -> dict[str, Any]:
    """A ``Click`` record: acknowledged with 200, never dispatched."""
    payload = postmark_open()
    del payload["FirstOpen"]
    payload.update(RecordType="Click", ClickLocation="HTML", OriginalLink="https://example.com")
    return _override(payload, overrides, email="Recipient")


def postmark_inbound(**overrides: Any) -> dict[str, Any]:
    """An inbound e-mail, as Postmark posts it to an inbound hook (answered 400 here)."""
    payload: dict[str, Any] = {
        "FromName": "Postmarkapp Support",
        "MessageStream": "inbound",
        "From": "support@postmarkapp.com",
        "FromFull": {"Email": "support@postmarkapp.com", "Name": "Postmarkapp Support"},
        "To": '"Firstname Lastname" <yourhash+SampleHash@inbound.postmarkapp.com>',
        "ToFull": [
            {"Email": "yourhash+SampleHash@inbound.postmarkapp.com", "Name": "Firstname Lastname"}
        ],
        "Subject": "Test subject",
        "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "Date": "Fri, 1 Aug 2014 16:45:32 -04:00",
        "TextBody": "This is a test text body.",
        "Headers": [],
        "Attachments": [],
    }
    return _override(payload, overrides, email="From")


def postmark_payload(record_type: str = "Bounce", **overrides: Any) -> dict[str, Any]:
    """Any record shape by name: one of :data:`RECORD_TYPES`."""
    return _FACTORIES[record_type](**overrides)


def _override(payload: dict[str, Any], overrides: dict[str, Any], *, email: str) -> dict[str, Any]:
    if "email" in overrides:
        overrides[email] = overrides.pop("email")
    payload.update(overrides)
    return payload


#: Record shapes by name, in the order ``bounce-middleware send --help`` lists them.
_FACTORIES: dict[str, Callable[..., dict[str, Any]]] = {
    "Bounce": postmark_bounce,
    "SpamComplaint": postmark_spam_complaint,
    "Legacy": postmark_legacy_bounce,
    "SubscriptionChange": postmark_subscription_change,
    "Delivery": postmark_delivery,
    "Open": postmark_open,
    "Click": postmark_click,
    "Inbound": postmark_inbound,
}
RECORD_TYPES: tuple[str, ...] = tuple(_FACTORIES)


def basic_auth_header(user: str, password: str) -> str:
    """The value of an ``Authorization`` header for HTTP Basic (UTF-8, RFC 7617)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"
