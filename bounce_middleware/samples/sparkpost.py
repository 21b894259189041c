"""Realistic SparkPost webhook payloads, and their headers, for tests and ``send``.

Every event :class:`~bounce_middleware.providers.SparkPost` maps, by kind
name, with overrides; batches in SparkPost's body layout; the creation ping;
and the headers of an authenticated POST (HTTP Basic, or the OAuth 2.0
bearer token). SparkPost signs nothing, so a sample is accepted by any route
configured with the same credentials or token::

    from bounce_middleware.providers import SparkPost
    from bounce_middleware.samples.sparkpost import sparkpost_event, sparkpost_request

    routes = {"/hooks/sparkpost": SparkPost(tokens=["a-long-random-token"])}
    headers, body = sparkpost_request(
        [sparkpost_event("hard", email="ann@example.com")], token="a-long-random-token"
    )
    test_app.post("/hooks/sparkpost", body, headers=headers)
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bounce_middleware.providers.sparkpost import BATCH_HEADER, TOKEN_HEADER

from . import basic_auth_header

__all__ = [
    "PING",
    "SAMPLE_KINDS",
    "sample_request",
    "sparkpost_batch",
    "sparkpost_body",
    "sparkpost_event",
    "sparkpost_headers",
    "sparkpost_request",
]

#: The body SparkPost posts when a webhook is created or validated: answered 200.
PING: list[dict[str, Any]] = [{"msys": {}}]

_BOUNCE = "message_event"
#: Sample name -> (event class, the fields that make that event), as SparkPost's
#: reference shows them. The names are the kinds the provider maps them to (``admin``:
#: bounce class 25, ``suppressed``: a policy rejection), plus acknowledged events.
_SAMPLES: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "hard": (_BOUNCE, {"type": "bounce", "bounce_class": "10", "error_code": "550",
                       "raw_reason": "550 5.1.1 <{email}>: Recipient address rejected"}),
    "soft": (_BOUNCE, {"type": "bounce", "bounce_class": "22", "error_code": "552",
                       "raw_reason": "552 5.2.2 Mailbox full"}),
    "blocked": (_BOUNCE, {"type": "bounce", "bounce_class": "51", "error_code": "554",
                          "raw_reason": "554 5.7.1 Message rejected as spam"}),
    "suppressed": (_BOUNCE, {"type": "policy_rejection", "bounce_class": "25",
                             "error_code": "554", "raw_reason": "550 5.0.0 Recipient suppressed",
                             "remote_addr": "127.0.0.1"}),
    "admin": (_BOUNCE, {"type": "bounce", "bounce_class": "25", "error_code": "554",
                        "raw_reason": "554 5.7.1 recipient address suppressed due to policy"}),
    "delay": (_BOUNCE, {"type": "delay", "bounce_class": "21", "error_code": "451",
                        "raw_reason": "451 4.4.0 DNS lookup failed; will retry",
                        "num_retries": "2", "queue_time": "3600"}),
    "complaint": (_BOUNCE, {"type": "spam_complaint", "fbtype": "abuse",
                            "report_by": "server.example.org", "report_to": "abuse.example.com"}),
    "unsubscribe": ("unsubscribe_event", {"type": "list_unsubscribe",
                                          "mailfrom": "{email}"}),
    "auto_reply": (_BOUNCE, {"type": "out_of_band", "bounce_class": "60",
                             "raw_reason": "I am out of the office until Monday"}),
    "unknown": (_BOUNCE, {"type": "out_of_band", "bounce_class": "1",
                          "raw_reason": "550 unrecognised response"}),
    "error": ("gen_event", {"type": "generation_failure", "error_code": "1902",
                            "raw_reason": "1902 Generation rendering failed",
                            "reason": "1902 Generation rendering failed"}),
    "delivery": (_BOUNCE, {"type": "delivery", "queue_time": "3083",
                           "outbound_tls": "1"}),
    "open": ("track_event", {"type": "open", "user_agent": "Mozilla/5.0",
                             "geo_ip": {"country": "US", "city": "Columbia"}}),
}  # fmt: skip
#: Every name :func:`sparkpost_event` takes, in the order ``send --help`` lists them.
SAMPLE_KINDS: tuple[str, ...] = tuple(_SAMPLES)


def sparkpost_event(
    kind: str = "hard", *, email: str = "john@example.com", **overrides: Any
) -> dict[str, Any]:
    """One batch element ``{"msys": {"<class>": {...}}}``; each call gets a new ``event_id``.

    ``kind`` is one of :data:`SAMPLE_KINDS`. Keyword arguments override or add
    fields of the event inside ``msys``; ``None`` removes one
    (``sparkpost_event(event_id=None)`` makes an event keyed by its fields).
    """
    try:
        event_class, fields = _SAMPLES[kind]
    except KeyError:
        raise ValueError(
            f"unknown SparkPost sample {kind!r}; known: {', '.join(SAMPLE_KINDS)}"
        ) from None
    event: dict[str, Any] = {
        "event_id": str(secrets.randbelow(9 * 10**16) + 10**16),
        "timestamp": str(int(time.time())),
        "transmission_id": str(secrets.randbelow(9 * 10**16) + 10**16),
        "message_id": uuid.uuid4().hex[:20],
        "campaign_id": "welcome",
        "customer_id": "1",
        "friendly_from": "sender@example.com",
        "msg_from": "msprvs1=17827RA6TC=bounces-1@sparkpostmail.com",
        "rcpt_to": email.lower(),
        "raw_rcpt_to": email,
        "rcpt_type": "to",
        "rcpt_tags": ["onboarding"],
        "rcpt_meta": {"user_id": "42"},
        "subject": "Please confirm your address",
        "routing_domain": email.rpartition("@")[2].lower(),
    }
    event.update(
        {k: v.replace("{email}", email) if type(v) is str else v for k, v in fields.items()}
    )
    if "raw_reason" in event and "reason" not in fields:
        event["reason"] = event["raw_reason"]
    event.update(overrides)
    return {"msys": {event_class: {k: v for k, v in event.items() if v is not None}}}


def sparkpost_batch(
    *events: str | Mapping[str, Any], email: str = "john@example.com"
) -> list[dict[str, Any]]:
    """A batch: each item a :func:`sparkpost_event` kind name or an element of your own."""
    return [
        sparkpost_event(item, email=email) if isinstance(item, str) else dict(item)
        for item in events
    ]


def sparkpost_body(events: Sequence[Mapping[str, Any]]) -> bytes:
    """A batch as the body of a POST: a JSON array."""
    return json.dumps([dict(event) for event in events], separators=(",", ":")).encode("utf-8")


def sparkpost_headers(
    *, token: str | None = None, credentials: str | None = None, legacy: bool = False
) -> dict[str, str]:
    """The headers of a webhook POST, with a new batch id.

    ``token``: the OAuth 2.0 access token, sent as ``Authorization: Bearer``
    (``legacy=True``: in the deprecated ``X-MessageSystems-Webhook-Token``
    header instead); ``credentials``: ``"user:password"`` for HTTP Basic.
    Neither: no authentication header.
    """
    if token is not None and credentials is not None and not legacy:
        raise ValueError("give a bearer token or Basic credentials, not both")
    headers = {
        "Content-Type": "application/json",
        BATCH_HEADER: str(uuid.uuid4()),
    }
    if credentials is not None:
        user, sep, password = credentials.partition(":")
        if not sep:
            raise ValueError('credentials must be "user:password"')
        headers["Authorization"] = basic_auth_header(user, password)
    if token is not None:
        if legacy:
            headers[TOKEN_HEADER] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
    return headers


def sparkpost_request(
    events_or_body: Sequence[Mapping[str, Any]] | bytes,
    *,
    token: str | None = None,
    credentials: str | None = None,
    legacy: bool = False,
) -> tuple[dict[str, str], bytes]:
    """The headers and body of a webhook POST, as SparkPost sends it.

    ``events_or_body`` is a list of elements (:func:`sparkpost_event`,
    :data:`PING`) or the exact body bytes; the rest as :func:`sparkpost_headers`.
    """
    body = events_or_body if isinstance(events_or_body, bytes) else sparkpost_body(events_or_body)
    return sparkpost_headers(token=token, credentials=credentials, legacy=legacy), body


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None = None
) -> tuple[dict[str, str], bytes]:
    """One sample event (``bounce-middleware send --provider sparkpost``).

    ``secret`` is the route's bearer token (one of ``SparkPost(tokens=...)``),
    sent as ``Authorization: Bearer``; None sends no authentication header
    (``send`` adds the route's Basic credentials itself).
    """
    if secret is not None and not secret.strip():
        raise ValueError("the SparkPost bearer token is empty")
    return sparkpost_request([sparkpost_event(kind, email=email)], token=secret)
