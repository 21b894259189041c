"""Realistic Resend webhook payloads and Svix-signed requests, for tests and ``send``.

``resend_event`` builds one event by kind; ``sign_request`` signs it as Svix
does for Resend, with the webhook's ``whsec_`` signing secret (a shared
secret: there is no test key to ship, sign with your route's own)::

    from bounce_middleware.samples.resend import resend_event, sign_request

    headers, body = sign_request(resend_event("hard", email="ann@example.com"),
                                 secret="whsec_...")
    app.post("/hooks/resend", body, headers=headers)

The field layout follows Resend's documented examples (providers.md, "Resend").
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bounce_middleware.signatures.svix import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_svix_secrets,
    sign_svix,
)

__all__ = [
    "RESEND_KINDS",
    "SAMPLE_KINDS",
    "resend_event",
    "sample_request",
    "sign_request",
]

#: Sample kinds -> the event type and the ``data`` fields that make the event one of
#: them. Bounce kinds first, then events the provider acknowledges without dispatching.
RESEND_KINDS: dict[str, dict[str, Any]] = {
    "hard": {
        "type": "email.bounced",
        "bounce": {
            "message": "The recipient's email provider sent a hard bounce message, and "
            "Resend will not send to this address again.",
            "subType": "General",
            "type": "Permanent",
            "diagnosticCode": [
                "smtp; 550 5.1.1 The email account that you tried to reach does not exist."
            ],
        },
    },
    "suppressed": {
        "type": "email.bounced",
        "bounce": {
            "message": "Resend has suppressed sending to this address because it is on the "
            "account-level suppression list.",
            "subType": "OnAccountSuppressionList",
            "type": "Permanent",
        },
    },
    "soft": {
        "type": "email.bounced",
        "bounce": {
            "message": "The recipient's email provider sent a bounce message because the "
            "recipient's inbox was full.",
            "subType": "MailboxFull",
            "type": "Transient",
            "diagnosticCode": [
                "smtp; 452 4.2.2 The email account that you tried to reach is over quota."
            ],
        },
    },
    "delayed": {"type": "email.delivery_delayed"},
    "complaint": {"type": "email.complained"},
    "error": {"type": "email.failed", "failed": {"reason": "reached_daily_quota"}},
    "delivered": {"type": "email.delivered"},
    "sent": {"type": "email.sent"},
}
#: The kind names :func:`resend_event` and :func:`sample_request` build.
SAMPLE_KINDS: tuple[str, ...] = tuple(RESEND_KINDS)

#: Top-level fields of an event; any other override goes into ``data``.
_TOP_LEVEL = frozenset({"type", "created_at", "data"})


def resend_event(
    kind: str = "hard", *, email: str = "alice@example.com", **overrides: Any
) -> dict[str, Any]:
    """One Resend event of ``kind`` (one of :data:`SAMPLE_KINDS`), sent to ``email``.

    Each call gets a new ``data.email_id`` and the current time. Keyword
    arguments ``type``, ``created_at`` and ``data`` replace the top-level
    fields; any other replaces or adds a field of ``data`` (``to=[...]``,
    ``tags=[{"name": "plan", "value": "free"}]``, ``bounce={...}``).
    """
    try:
        fields = copy.deepcopy(RESEND_KINDS[kind])
    except KeyError:
        known = ", ".join(RESEND_KINDS)
        raise ValueError(f"unknown Resend sample kind {kind!r}; known: {known}") from None
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "type": fields.pop("type"),
        # The event's time: ISO 8601, milliseconds and "Z", as Resend writes it.
        "created_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": {
            # The e-mail's own creation, a moment earlier, written the other way.
            "created_at": now.isoformat(timespec="microseconds"),
            "email_id": str(uuid.uuid4()),
            "from": "Acme <onboarding@example.com>",
            "to": [email],
            "subject": "Please confirm your address",
            **fields,
            "tags": {"category": "confirm_email"},
        },
    }
    for name, value in overrides.items():
        (event if name in _TOP_LEVEL else event["data"])[name] = value
    return event


def sign_request(
    event: Mapping[str, Any] | bytes,
    *,
    secret: str,
    msg_id: str | None = None,
    timestamp: int | str | None = None,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of a request signed as Svix signs Resend's, carrying ``event``.

    ``event`` is a payload (written as JSON) or the exact body bytes.
    ``secret`` is the webhook's signing secret (``whsec_...``). ``msg_id``
    defaults to a new random ``msg_...`` id (the event id: pass the same one
    to build a retry) and ``timestamp`` to now (pass an old one for a stale request).
    """
    [key] = load_svix_secrets(secret)
    body = event if isinstance(event, bytes) else json.dumps(event).encode("utf-8")
    msg_id = "msg_" + secrets.token_urlsafe(20) if msg_id is None else msg_id
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign_svix(key, body, msg_id=msg_id, timestamp=stamp),
    }
    return headers, body


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None
) -> tuple[dict[str, str], bytes]:
    """A signed request of ``kind`` for ``bounce-middleware send --provider resend``.

    ``secret`` is the route's Resend signing secret (``whsec_...``): Svix's
    signature is a shared-secret HMAC, so there is no test key to ship.
    """
    if not secret:
        raise ValueError(
            "a Resend sample is signed with the route's signing secret (whsec_...): pass it"
        )
    return sign_request(resend_event(kind, email=email), secret=secret)
