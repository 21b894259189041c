"""Realistic Mailgun webhook payloads and correctly signed requests, for tests and ``send``.

``mailgun_event`` builds the ``event-data`` of one event by kind;
``sign_request`` wraps it in a ``signature`` block signed with a signing key,
as Mailgun posts it::

    from bounce_middleware.testing import mailgun_event, sign_mailgun_request

    headers, body = sign_mailgun_request(mailgun_event("hard", email="ann@example.com"),
                                         signing_key="key-for-tests")
    app.post("/hooks/mailgun", body, headers=headers)

The field layout follows Mailgun's published samples (providers.md, "Mailgun").
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import Any

from bounce_middleware.signatures.mailgun import sign_mailgun

__all__ = ["MAILGUN_KINDS", "mailgun_event", "sample_request", "sign_request"]

_FAILED_STATUS = {"attempt-no": 1, "session-seconds": 0.21, "mx-host": "mx.example.com"}

#: Sample kinds -> the fields that make the event one of them. Bounce kinds first,
#: then the events the provider acknowledges without dispatching.
MAILGUN_KINDS: dict[str, dict[str, Any]] = {
    "hard": {
        "event": "failed",
        "log-level": "error",
        "severity": "permanent",
        "reason": "bounce",
        "delivery-status": {
            **_FAILED_STATUS,
            "code": 550,
            "enhanced-code": "5.1.1",
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
        },
    },
    "soft": {
        "event": "failed",
        "log-level": "warn",
        "severity": "temporary",
        "reason": "generic",
        "delivery-status": {
            **_FAILED_STATUS,
            "code": 452,
            "enhanced-code": "4.2.2",
            "message": "4.2.2 The email account that you tried to reach is over quota.",
            "description": "",
            "retry-seconds": 600,
        },
    },
    "suppressed": {
        "event": "failed",
        "log-level": "error",
        "severity": "permanent",
        "reason": "suppress-bounce",
        "delivery-status": {
            "attempt-no": 1,
            "code": 605,
            "enhanced-code": "",
            "message": "",
            "description": "Not delivering to previously bounced address",
            "session-seconds": 0,
        },
    },
    "complaint": {"event": "complained", "log-level": "warn"},
    "unsubscribe": {"event": "unsubscribed", "log-level": "info"},
    # Mailgun refused the send itself: the event names no recipient, only the To header.
    "error": {
        "event": "rejected",
        "log-level": "warn",
        "reject": {"reason": "Sandbox subdomains are for test purposes only", "description": ""},
    },
    "delivered": {
        "event": "delivered",
        "log-level": "info",
        "delivery-status": {**_FAILED_STATUS, "code": 250, "message": "OK", "description": ""},
    },
    "accepted": {"event": "accepted", "log-level": "info"},
    "opened": {"event": "opened", "log-level": "info"},
    "clicked": {"event": "clicked", "log-level": "info", "url": "https://example.com/"},
}


def mailgun_event(
    kind: str = "hard", *, email: str = "alice@example.com", **overrides: Any
) -> dict[str, Any]:
    """The ``event-data`` of one Mailgun event of ``kind`` (a key of :data:`MAILGUN_KINDS`).

    Each call gets a new ``id`` and the current ``timestamp``. Keyword
    arguments replace top-level fields; an underscore in a name stands for
    Mailgun's hyphen (``user_variables={"user-id": "7"}``, ``delivery_status=...``).
    """
    try:
        fields = MAILGUN_KINDS[kind]
    except KeyError:
        known = ", ".join(MAILGUN_KINDS)
        raise ValueError(f"unknown Mailgun sample kind {kind!r}; known: {known}") from None
    domain = email.rpartition("@")[2] or "example.com"
    event: dict[str, Any] = {
        "id": secrets.token_urlsafe(16)[:22],
        "timestamp": round(time.time(), 6),
        **copy.deepcopy(fields),
        "flags": {"is-authenticated": True, "is-test-mode": False},
        "envelope": {"sender": "bob@mg.example.com", "transport": "smtp", "targets": email},
        "message": {
            "headers": {
                "to": f"<{email}>",
                "message-id": f"{secrets.token_hex(8)}@mg.example.com",
                "from": "Bob <bob@mg.example.com>",
                "subject": "Please confirm your address",
            },
            "attachments": [],
            "size": 1024,
        },
        "recipient": email,
        "recipient-domain": domain,
        "campaigns": [],
        "tags": ["welcome"],
        "user-variables": {"user-id": "42"},
    }
    if fields["event"] == "rejected":
        for name in ("recipient", "recipient-domain", "envelope"):
            del event[name]
    event.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return event


def sign_request(
    event_data: object,
    *,
    signing_key: str | bytes,
    timestamp: int | str | None = None,
    token: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of a request signed as Mailgun signs it, carrying ``event_data``.

    ``timestamp`` defaults to now and ``token`` to a new random 50-character
    one (Mailgun's length): pass them to build a stale or replayed request.
    """
    key = signing_key.encode("utf-8") if isinstance(signing_key, str) else signing_key
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = secrets.token_hex(25) if token is None else token
    signature = {
        "timestamp": stamp,
        "token": token,
        "signature": sign_mailgun(key, timestamp=stamp, token=token),
    }
    body = json.dumps({"signature": signature, "event-data": event_data}).encode("utf-8")
    return {"Content-Type": "application/json"}, body


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None
) -> tuple[dict[str, str], bytes]:
    """A signed request of ``kind`` for ``bounce-middleware send --provider mailgun``.

    ``secret`` is the route's Mailgun signing key (Mailgun's signature is a
    shared-secret HMAC: there is no test key to ship).
    """
    if not secret:
        raise ValueError("a Mailgun sample is signed with the route's signing key: pass it")
    return sign_request(mailgun_event(kind, email=email), signing_key=secret)
