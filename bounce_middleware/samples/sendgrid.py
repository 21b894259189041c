"""Realistic SendGrid Event Webhook payloads, and a signer, for tests and ``send``.

Every event :class:`~bounce_middleware.providers.SendGrid` maps, by kind
name, with overrides; batches in SendGrid's own body layout; and signed
requests. SendGrid signs with its private key, which nobody else has, so
signed samples use :data:`TEST_PRIVATE_KEY_PEM`: a key pair made for this
project and published in its source. Configure :data:`TEST_PUBLIC_KEY` only
on a test route, never in production::

    from bounce_middleware.providers import SendGrid
    from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY, sign_request, sendgrid_event

    routes = {"/hooks/sendgrid": SendGrid(public_key=TEST_PUBLIC_KEY)}
    headers, body = sign_request([sendgrid_event("hard", email="ann@example.com")])
    test_app.post("/hooks/sendgrid", body, headers=headers)

Signing needs the ``crypto`` extra (``cryptography``), imported only then.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bounce_middleware.signatures.common import require_cryptography
from bounce_middleware.signatures.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_sendgrid

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

__all__ = [
    "SENDGRID_KINDS",
    "TEST_PRIVATE_KEY_PEM",
    "TEST_PUBLIC_KEY",
    "sample_request",
    "sendgrid_batch",
    "sendgrid_body",
    "sendgrid_event",
    "sign_request",
]

#: PUBLIC TEST MATERIAL, NOT A SECRET: a P-256 key pair generated for this project's
#: samples and tests. Anyone can sign with it, so a route configured with
#: :data:`TEST_PUBLIC_KEY` accepts anyone's requests: use it on test routes only.
TEST_PRIVATE_KEY_PEM = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/IGIBLWXMSsB+sHo
9BkwLFWpxkEvNlp3i0VVMcVpteehRANCAATCTfCKI5+I9sGWBW5qJMNVv4E7jxk1
refWrIVsXtl+VseizyvDex0PxyWSFKiVqDJH9p2Cmk/wQnjsdMopuFMA
-----END PRIVATE KEY-----
"""
#: The public half of :data:`TEST_PRIVATE_KEY_PEM`, as SendGrid's UI shows a key
#: (``SendGrid(public_key=TEST_PUBLIC_KEY)`` on a test route).
TEST_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwk3wiiOfiPbBlgVuaiTDVb+BO48ZNa3n1qyFbF7ZflbHos8rw3sd"
    "D8clkhSolagyR/adgppP8EJ47HTKKbhTAA=="
)

#: Sample name -> the fields that make that event, as SendGrid's reference shows them.
#: The names are the kinds the provider maps them to, plus the acknowledged events.
_SAMPLES: Mapping[str, Mapping[str, Any]] = {
    "hard": {
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 unknown recipient",
    },
    "blocked": {
        "event": "bounce",
        "type": "blocked",
        "status": "5.7.1",
        "reason": "550 5.7.1 blocked by policy",
    },
    "soft": {
        "event": "deferred",
        "response": "450 4.2.2 mailbox full, try again later",
        "attempt": "3",
    },
    "suppressed": {"event": "dropped", "reason": "Bounced Address", "status": "5.0.0"},
    "invalid": {"event": "dropped", "reason": "Invalid", "status": "5.0.0"},
    "error": {"event": "dropped", "reason": "Spam Content", "status": "5.0.0"},
    "complaint": {"event": "spamreport"},
    "unsubscribe": {"event": "unsubscribe"},
    "group_unsubscribe": {"event": "group_unsubscribe", "asm_group_id": 10},
    "subscribe": {"event": "group_resubscribe", "asm_group_id": 10},
    "processed": {"event": "processed"},
    "delivered": {"event": "delivered", "response": "250 OK"},
    "open": {"event": "open", "useragent": "Mozilla/5.0", "ip": "192.0.2.1"},
    "click": {
        "event": "click",
        "useragent": "Mozilla/5.0",
        "ip": "192.0.2.1",
        "url": "https://example.com/",
    },
}
#: Every name :func:`sendgrid_event` takes, in the order ``send --help`` lists them.
SENDGRID_KINDS: tuple[str, ...] = tuple(_SAMPLES)


def sendgrid_event(
    kind: str = "hard", *, email: str = "john@example.com", **overrides: Any
) -> dict[str, Any]:
    """One Event Webhook event; each call gets a new ``sg_event_id``.

    ``kind`` is one of :data:`SENDGRID_KINDS`. Keyword arguments override or
    add top-level fields (custom arguments appear there too, as SendGrid merges
    them); ``None`` removes a field. Fields spelt with a hyphen go through a
    dict: ``sendgrid_event(**{"smtp-id": "<x@example.com>"})``.
    """
    try:
        fields = _SAMPLES[kind]
    except KeyError:
        raise ValueError(
            f"unknown SendGrid sample {kind!r}; known: {', '.join(SENDGRID_KINDS)}"
        ) from None
    message = uuid.uuid4().hex[:22]
    event: dict[str, Any] = {
        "email": email,
        "timestamp": int(time.time()),
        "smtp-id": f"<{message}@ismtpd-555>",
        "category": "cat facts",
        "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("="),
        "sg_message_id": f"{message}.filter0001.16648.5515E0B88.0",
        **fields,
    }
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not None}


def sendgrid_batch(
    *events: str | Mapping[str, Any], email: str = "john@example.com"
) -> list[dict[str, Any]]:
    """A batch of events: each a :func:`sendgrid_event` kind name or an event of your own."""
    return [
        sendgrid_event(item, email=email) if isinstance(item, str) else dict(item)
        for item in events
    ]


def sendgrid_body(events: Sequence[Mapping[str, Any]]) -> bytes:
    """Events as SendGrid lays out a POST body: ``[{...},\\r\\n{...}]\\r\\n``.

    The signature covers these exact bytes, CR/LF included.
    """
    compact = [json.dumps(dict(event), separators=(",", ":")) for event in events]
    return ("[" + ",\r\n".join(compact) + "]\r\n").encode("utf-8")


def sign_request(
    events_or_body: Sequence[Mapping[str, Any]] | bytes,
    *,
    private_key: str | bytes | EllipticCurvePrivateKey = TEST_PRIVATE_KEY_PEM,
    timestamp: str | int | None = None,
) -> tuple[dict[str, str], bytes]:
    """The headers and body of a signed Event Webhook POST, as SendGrid would send it.

    ``events_or_body`` is a list of events (laid out by :func:`sendgrid_body`)
    or the exact body bytes. ``private_key`` is a PEM string or a loaded key
    (default: the published TEST key); ``timestamp`` the signed Unix time
    (default: now; an old one makes a stale request).
    """
    body = events_or_body if isinstance(events_or_body, bytes) else sendgrid_body(events_or_body)
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = sign_sendgrid(_private_key(private_key), body, timestamp=stamp)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature,
        TIMESTAMP_HEADER: stamp,
    }
    return headers, body


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None = None
) -> tuple[dict[str, str], bytes]:
    """One signed sample event (``bounce-middleware send --provider sendgrid``).

    ``secret`` is the PEM private key to sign with; None signs with the TEST
    key, which a route accepts when configured with :data:`TEST_PUBLIC_KEY`.
    """
    if secret is not None and "-----BEGIN" not in secret:
        raise ValueError(
            "SendGrid requests are signed with a private key: give it in PEM, "
            "or no secret to sign with the TEST key"
        )
    return sign_request(
        [sendgrid_event(kind, email=email)], private_key=secret or TEST_PRIVATE_KEY_PEM
    )


def _private_key(key: str | bytes | EllipticCurvePrivateKey) -> EllipticCurvePrivateKey:
    require_cryptography()
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    loaded = load_pem_private_key(key.encode("ascii") if isinstance(key, str) else key, None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError("a SendGrid signing key must be an ECDSA (P-256) private key")
    return loaded
