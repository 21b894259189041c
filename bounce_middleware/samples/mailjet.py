"""Realistic Mailjet Event API payloads, single and grouped, for tests and ``send``.

Mailjet signs nothing: it sends the HTTP Basic credentials written into its
event URL, so a sample is only a body (the credentials go with the request)::

    from bounce_middleware.providers import Mailjet
    from bounce_middleware.samples.mailjet import mailjet_batch, mailjet_body, mailjet_event
    from bounce_middleware.testing import basic_auth_header

    routes = {"/hooks/mailjet": Mailjet(credentials=["mailjet:a-long-random-password"])}
    auth = {"Authorization": basic_auth_header("mailjet", "a-long-random-password")}
    test_app.post("/hooks/mailjet", mailjet_body(mailjet_event("hard")), headers=auth)
    test_app.post("/hooks/mailjet", mailjet_body(mailjet_batch("soft", "open")), headers=auth)

The field layout follows Mailjet's Event API guide (providers.md, "Mailjet").
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "MAILJET_KINDS",
    "SAMPLE_KINDS",
    "mailjet_batch",
    "mailjet_body",
    "mailjet_event",
    "sample_request",
]

#: Sample name -> the fields that make that event. Bounce kinds first, then the events
#: the provider acknowledges without dispatching.
MAILJET_KINDS: Mapping[str, Mapping[str, Any]] = {
    "hard": {
        "event": "bounce",
        "blocked": True,
        "hard_bounce": True,
        "error_related_to": "recipient",
        "error": "user unknown",
        "comment": "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
    },
    "soft": {
        "event": "bounce",
        "blocked": False,
        "hard_bounce": False,
        "error_related_to": "recipient",
        "error": "quota exceeded",
        "comment": "452 4.2.2 The email account that you tried to reach is over quota",
    },
    "blocked": {
        "event": "bounce",
        "blocked": False,
        "hard_bounce": True,
        "error_related_to": "spam",
        "error": "sender blocked",
        "comment": "554 5.7.1 Service unavailable; client host blocked using a blocklist",
    },
    "suppressed": {"event": "blocked", "error_related_to": "mailjet", "error": "preblocked"},
    "error": {"event": "blocked", "error_related_to": "content", "error": "bad or empty template"},
    "complaint": {"event": "spam", "source": "JMRPP"},
    "unsubscribe": {
        "event": "unsub",
        "mj_list_id": 1,
        "ip": "192.0.2.1",
        "geo": "FR",
        "agent": "Mozilla/5.0",
    },
    "sent": {
        "event": "sent",
        "smtp_reply": "sent (250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp)",
    },
    "open": {"event": "open", "ip": "192.0.2.1", "geo": "US", "agent": "Mozilla/5.0"},
    "click": {
        "event": "click",
        "url": "https://example.com/",
        "ip": "192.0.2.1",
        "geo": "FR",
        "agent": "Mozilla/5.0",
    },
}
#: Every name :func:`mailjet_event` takes, in the order ``send --help`` lists them.
SAMPLE_KINDS: tuple[str, ...] = tuple(MAILJET_KINDS)


def mailjet_event(
    kind: str = "hard", *, email: str = "john@example.com", **overrides: Any
) -> dict[str, Any]:
    """One Event API event; each call gets a new ``MessageID`` (above 2^53, as Mailjet's are).

    ``kind`` is one of :data:`SAMPLE_KINDS`. Keyword arguments override or
    add top-level fields (``CustomID="order-42"``, ``time=...``); ``None``
    removes a field.
    """
    try:
        fields = MAILJET_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown Mailjet sample {kind!r}; known: {', '.join(SAMPLE_KINDS)}"
        ) from None
    message_id = 100_000_000_000_000_000 + secrets.randbelow(900_000_000_000_000_000)
    event: dict[str, Any] = {
        "event": fields["event"],
        "time": int(time.time()),
        "MessageID": message_id,
        "Message_GUID": str(uuid.uuid4()),
        "email": email,
        "mj_campaign_id": 0,
        "mj_contact_id": 0,
        "customcampaign": "",
        "CustomID": "",
        "Payload": "",
        **fields,
    }
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not None}


def mailjet_batch(
    *events: str | Mapping[str, Any], email: str = "john@example.com"
) -> list[dict[str, Any]]:
    """A grouped batch: each item a :func:`mailjet_event` kind name or an event of your own."""
    return [
        mailjet_event(item, email=email) if isinstance(item, str) else dict(item) for item in events
    ]


def mailjet_body(payload: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> bytes:
    """One event (an object) or a grouped batch (an array) as a POST body."""
    data: Any = dict(payload) if isinstance(payload, Mapping) else [dict(e) for e in payload]
    return json.dumps(data).encode("utf-8")


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None = None
) -> tuple[dict[str, str], bytes]:
    """One sample event as Mailjet posts it (``bounce-middleware send --provider mailjet``).

    Mailjet signs nothing: the route's HTTP Basic credentials are added by the
    sender (``send`` takes them from ``--user``/``--password`` or the URL), so
    ``secret`` must be None.
    """
    if secret is not None:
        raise ValueError(
            "Mailjet signs nothing: its route checks HTTP Basic credentials "
            "(--user and --password, or user:password in the URL), not a secret"
        )
    return {"Content-Type": "application/json"}, mailjet_body(mailjet_event(kind, email=email))
