"""Realistic Brevo transactional webhook events, for tests and ``bounce-middleware send``.

Brevo signs nothing: a request carries the webhook URL's HTTP Basic
credentials or the webhook's bearer token, so :func:`brevo_request` adds one
of those::

    from bounce_middleware.providers.brevo import Brevo
    from bounce_middleware.samples.brevo import brevo_event, brevo_request

    routes = {"/hooks/brevo": Brevo(tokens=["a-long-random-token-for-tests"])}
    headers, body = brevo_request(brevo_event("hard", email="ann@example.com"),
                                  token="a-long-random-token-for-tests")
    test_app.post("/hooks/brevo", body, headers=headers)

The field layout follows Brevo's published events (``docs/providers.md``,
"Brevo"): ``ts_epoch`` in milliseconds, ``tag`` as a JSON-encoded list.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from . import basic_auth_header

__all__ = [
    "SAMPLE_KINDS",
    "brevo_batch",
    "brevo_body",
    "brevo_event",
    "brevo_headers",
    "brevo_request",
    "sample_request",
]

#: Brevo's ``id`` names the webhook, not the event: the same on every event.
WEBHOOK_ID = 814119

#: Sample name -> the fields that make that event. The names are the kinds the
#: provider maps them to (``suppressed`` is Brevo's ``blocked``), then two events
#: it acknowledges without dispatching.
_SAMPLES: Mapping[str, Mapping[str, Any]] = {
    "hard": {
        "event": "hard_bounce",
        "reason": " 550 5.1.1 The email account that you tried to reach does not exist",
    },
    "soft": {"event": "soft_bounce", "reason": " 452 4.2.2 The mailbox is full"},
    "deferred": {"event": "deferred", "reason": " 421 4.7.0 Try again later"},
    "suppressed": {"event": "blocked", "reason": "blocked : due to unsubscribed user"},
    "invalid": {"event": "invalid_email"},
    "complaint": {"event": "spam"},
    "unsubscribe": {"event": "unsubscribed", "is_returnpath": True},
    "error": {"event": "error", "reason": "sending failed"},
    "delivered": {"event": "delivered", "reason": "sent", "sending_ip": "192.0.2.25"},
    "opened": {"event": "opened", "ip": "192.0.2.1", "user_agent": "Mozilla/5.0"},
}
#: Every name :func:`brevo_event` takes, in the order ``send --help`` lists them.
SAMPLE_KINDS: tuple[str, ...] = tuple(_SAMPLES)


def brevo_event(
    kind: str = "hard", *, email: str = "john@example.com", **overrides: Any
) -> dict[str, Any]:
    """One transactional event of ``kind`` (one of :data:`SAMPLE_KINDS`), stamped now.

    Each call gets a new ``message-id``. Keyword arguments override or add
    top-level fields; ``None`` removes one. Brevo's hyphenated names go
    through a dict: ``brevo_event(**{"X-Mailin-custom": '{"user_id": "42"}'})``.
    """
    try:
        fields = _SAMPLES[kind]
    except KeyError:
        known = ", ".join(SAMPLE_KINDS)
        raise ValueError(f"unknown Brevo sample {kind!r}; known: {known}") from None
    now_ms = time.time_ns() // 1_000_000
    seconds = now_ms // 1000
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%d%H%M")
    event: dict[str, Any] = {
        "id": WEBHOOK_ID,
        "email": email,
        "message-id": f"<{stamp}.{secrets.randbelow(10**11)}@smtp-relay.mailin.fr>",
        # The account's timezone in real events; UTC here.
        "date": datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "tags": ["welcome"],
        "tag": '["welcome"]',
        "subject": "Please confirm your address",
        "ts_event": seconds,
        "ts": seconds,
        "ts_epoch": now_ms,
        "X-Mailin-custom": '{"user_id": "42"}',
        **fields,
    }
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not None}


def brevo_batch(
    *events: str | Mapping[str, Any], email: str = "john@example.com"
) -> list[dict[str, Any]]:
    """A batch (``batched: true``): each a :func:`brevo_event` kind name or an event of yours."""
    return [
        brevo_event(item, email=email) if isinstance(item, str) else dict(item) for item in events
    ]


def brevo_body(events: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> bytes:
    """One event as a JSON object, or a batch as a JSON array, as Brevo posts them."""
    if isinstance(events, Mapping):
        return json.dumps(dict(events)).encode("utf-8")
    return json.dumps([dict(event) for event in events]).encode("utf-8")


def brevo_headers(*, token: str | None = None, credentials: str | None = None) -> dict[str, str]:
    """The headers Brevo sends: ``Authorization: Bearer <token>``, or Basic ``user:password``.

    With neither, only ``Content-Type`` (an unauthenticated request).
    """
    headers = {"Content-Type": "application/json"}
    if token is not None and credentials is not None:
        raise ValueError("Brevo sends either a bearer token or Basic credentials, not both")
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    elif credentials is not None:
        user, sep, password = credentials.partition(":")
        if not sep:
            raise ValueError('credentials must be "user:password"')
        headers["Authorization"] = basic_auth_header(user, password)
    return headers


def brevo_request(
    events: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    token: str | None = None,
    credentials: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of a Brevo POST: an event (or a batch) with a token or credentials."""
    return brevo_headers(token=token, credentials=credentials), brevo_body(events)


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None = None
) -> tuple[dict[str, str], bytes]:
    """One sample event for ``bounce-middleware send --provider brevo``.

    ``secret`` is the route's bearer token (sent as ``Authorization: Bearer``);
    None sends no Authorization header: the command adds the route's HTTP
    Basic credentials itself.
    """
    return brevo_request(brevo_event(kind, email=email), token=secret or None)
