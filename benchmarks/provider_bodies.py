"""One hard bounce as Mailjet, SparkPost, Brevo, Resend and Mandrill post it.

Written from the fields each provider documents (providers.md and the
providers' own examples), about the size of a real event. Every call is a new
event: its own ids and the current time, so that no store or replay memory
on either side takes it for a redelivery.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

#: Mailjet's ``MessageID`` is above 2**53 (a double would lose digits).
_mailjet_ids = itertools.count(104_427_216_766_056_450)
_sparkpost_ids = itertools.count(92_356_927_693_813_856)
_brevo_ids = itertools.count(202_305_311_437_852_204)

_GMAIL_550 = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
    "   550-5.1.1 double-checking the recipient's email address for typos or\n"
    "   550-5.1.1 unnecessary spaces. Learn more at\n"
    "   550 5.1.1  https://support.google.com/mail/?p=NoSuchUser g14-20020a5d698e - gsmtp"
)


def mailjet_bounce(email: str) -> dict[str, Any]:
    """A ``bounce`` with ``hard_bounce: true`` (user unknown), as one ungrouped event."""
    return {
        "event": "bounce",
        "time": int(time.time()),
        "MessageID": next(_mailjet_ids),
        "Message_GUID": str(uuid.uuid4()),
        "email": email,
        "mj_campaign_id": 7_257_124_591,
        "mj_contact_id": 1_764_362_134,
        "customcampaign": "mj.nl=58424",
        "CustomID": "welcome-2024",
        "Payload": "",
        "blocked": False,
        "hard_bounce": True,
        "error_related_to": "recipient",
        "error": "user unknown",
        "comment": "Host or domain name not found. Name service error for name=example.com",
    }


def sparkpost_bounce(email: str) -> dict[str, Any]:
    """A ``message_event`` of type ``bounce``, ``bounce_class`` 10 (invalid recipient)."""
    now = str(int(time.time()))
    return {
        "msys": {
            "message_event": {
                "type": "bounce",
                "bounce_class": "10",
                "campaign_id": "Welcome Campaign",
                "customer_id": "1",
                "delv_method": "esmtp",
                "error_code": "550",
                "event_id": str(next(_sparkpost_ids)),
                "friendly_from": "sender@example.com",
                "ip_address": "192.0.2.25",
                "ip_pool": "Default-Ip-Pool",
                "message_id": uuid.uuid4().hex[:20],
                "msg_from": "msprvs1=17827RA6TC8Jt=bounces-1@sparkpostmail.com",
                "msg_size": "1337",
                "num_retries": "0",
                "rcpt_meta": {"customKey": "customValue"},
                "rcpt_tags": ["welcome", "us"],
                "rcpt_to": email.lower(),
                "raw_rcpt_to": email,
                "rcpt_type": "to",
                "raw_reason": "550 5.1.1 <" + email + ">: Recipient address rejected",
                "reason": "550 5.1.1 <" + email + ">: Recipient address rejected",
                "routing_domain": email.rpartition("@")[2],
                "sending_ip": "192.0.2.10",
                "subaccount_id": "101",
                "subject": "Welcome to Example",
                "template_id": "templ-1234",
                "template_version": "1",
                "timestamp": now,
                "transmission_id": str(next(_sparkpost_ids)),
            }
        }
    }


def brevo_bounce(email: str) -> dict[str, Any]:
    """A ``hard_bounce`` transactional event (``ts_epoch`` in milliseconds)."""
    now = time.time()
    return {
        "id": 814119,
        "email": email,
        "message-id": f"<{next(_brevo_ids)}@smtp-relay.mailin.fr>",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),
        "tags": ["welcome", "tag2"],
        "tag": '["welcome","tag2"]',
        "event": "hard_bounce",
        "subject": "Welcome to Example",
        "sending_ip": "192.0.2.10",
        "ts_event": int(now),
        "ts": int(now),
        "reason": _GMAIL_550,
        "ts_epoch": int(now * 1000),
    }


def resend_bounce(email: str) -> dict[str, Any]:
    """An ``email.bounced`` with ``bounce.type`` Permanent and ``subType`` General."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return {
        "type": "email.bounced",
        "created_at": f"{stamp}.{int(now * 1000) % 1000:03d}Z",
        "data": {
            "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
            "created_at": f"{stamp}.000000+00:00",
            "email_id": str(uuid.uuid4()),
            "from": "Acme <onboarding@example.com>",
            "to": [email],
            "subject": "Welcome to Example",
            "bounce": {
                "message": (
                    "The recipient's email provider sent a hard bounce message, and there's a "
                    "problem with the email address (it may not exist)."
                ),
                "subType": "General",
                "type": "Permanent",
            },
            "tags": {"category": "welcome"},
        },
    }


def mandrill_bounce(email: str) -> dict[str, Any]:
    """A ``hard_bounce`` message event (``bad_mailbox``), as in a ``mandrill_events`` batch."""
    now = int(time.time())
    message_id = uuid.uuid4().hex
    return {
        "event": "hard_bounce",
        "msg": {
            "ts": now - 60,
            "subject": "Welcome to Example",
            "email": email,
            "sender": "sender@example.com",
            "tags": ["welcome"],
            "state": "bounced",
            "metadata": {"user_id": 111},
            "_id": message_id,
            "_version": "exampleaaaaaaaaaaaaaaa",
            "bounce_description": "bad_mailbox",
            "bgtools_code": 10,
            "diag": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        },
        "_id": message_id,
        "ts": now,
    }
