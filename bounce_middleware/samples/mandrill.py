"""Realistic Mandrill webhook events and correctly signed requests, for tests and ``send``.

``mandrill_event`` builds one event by kind, ``mandrill_batch`` several, and
``sign_request`` posts them as Mandrill does: a form whose ``mandrill_events``
field is the JSON array, signed with the webhook's key over the URL the route
is configured with::

    from bounce_middleware.providers import Mandrill
    from bounce_middleware.samples.mandrill import mandrill_event, sign_request

    URL = "https://example.com/hooks/mandrill"
    routes = {"/hooks/mandrill": Mandrill(key="key-for-tests", url=URL)}
    headers, body = sign_request([mandrill_event("hard", email="ann@example.com")],
                                 key="key-for-tests", url=URL)
    test_app.post("/hooks/mandrill", body, headers=headers)

The field layout follows Mandrill's webhook format and its "Send Test" events
(providers.md, "Mandrill").
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus

from bounce_middleware.signatures.mandrill import SIGNATURE_HEADER, TEST_KEY, sign_mandrill

__all__ = [
    "EMPTY_CHECK",
    "SAMPLE_KINDS",
    "USER_AGENT",
    "empty_check_request",
    "mandrill_batch",
    "mandrill_body",
    "mandrill_event",
    "sample_request",
    "sign_request",
]

#: The ``User-Agent`` of Mandrill's webhook requests.
USER_AGENT = "Mandrill-Webhook/1.0"
#: The body of Mandrill's empty check, posted (signed with ``test-webhook``) when the
#: HEAD check of a webhook URL being saved was not answered 200.
EMPTY_CHECK = b"mandrill_events=%5B%5D"

_HARD_DIAG = "smtp;550 5.1.1 The email account that you tried to reach does not exist."

#: Sample kind -> (top-level fields, ``msg`` fields) of a message event.
_MESSAGE_SAMPLES: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {
    "hard": (
        {"event": "hard_bounce"},
        {
            "state": "bounced",
            "bounce_description": "bad_mailbox",
            "bgtools_code": 10,
            "diag": _HARD_DIAG,
        },
    ),
    "soft": (
        {"event": "soft_bounce"},
        {
            "state": "soft-bounced",
            "bounce_description": "mailbox_full",
            "bgtools_code": 22,
            "diag": "smtp;552 5.2.2 Over Quota",
        },
    ),
    "deferral": ({"event": "deferral"}, {"state": "deferred"}),
    "complaint": ({"event": "spam"}, {"state": "sent"}),
    "unsubscribe": ({"event": "unsub"}, {"state": "sent"}),
    "suppressed": ({"event": "reject"}, {"state": "rejected"}),
    "send": ({"event": "send"}, {"state": "sent"}),
    "delivered": ({"event": "delivered"}, {"state": "sent"}),
    "open": (
        {"event": "open", "ip": "192.0.2.1", "user_agent": "Mozilla/5.0"},
        {"state": "sent"},
    ),
}

#: Every kind :func:`mandrill_event` builds: bounce kinds first, then a sync event
#: (an address added to the rejection denylist), then the acknowledged events.
SAMPLE_KINDS: tuple[str, ...] = (
    "hard", "soft", "deferral", "complaint", "unsubscribe", "suppressed", "blacklist",
    "send", "delivered", "open",
)  # fmt: skip


def mandrill_event(
    kind: str = "hard", *, email: str = "alice@example.com", **overrides: Any
) -> dict[str, Any]:
    """One Mandrill webhook event of ``kind`` (one of :data:`SAMPLE_KINDS`).

    Each call gets a new message ``_id`` and the current ``ts``. Keyword
    arguments replace top-level fields (``ts=1446357425``, ``_id=...``), a
    ``None`` removes one; ``msg=`` (and ``reject=`` for ``"blacklist"``) are
    merged into that object.
    """
    if kind not in SAMPLE_KINDS:
        known = ", ".join(SAMPLE_KINDS)
        raise ValueError(f"unknown Mandrill sample kind {kind!r}; known: {known}")
    now = int(time.time())
    event = _sync_event(email, now) if kind == "blacklist" else _message_event(kind, email, now)
    for name in ("msg", "reject"):
        merged = overrides.get(name)
        if isinstance(merged, Mapping) and isinstance(event.get(name), dict):
            event[name].update(overrides.pop(name))
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not None}


def _message_event(kind: str, email: str, now: int) -> dict[str, Any]:
    top, fields = _MESSAGE_SAMPLES[kind]
    message_id = secrets.token_hex(16)  # 32 hex digits, as Mandrill's ids
    msg: dict[str, Any] = {
        "ts": now - 60,  # the send time: a minute before the event
        "subject": "Please confirm your address",
        "email": email,
        "sender": "bob@example.com",
        "tags": ["welcome"],
        "opens": [],
        "clicks": [],
        "metadata": {"user_id": "42"},
        "_id": message_id,
        "_version": secrets.token_hex(11),
        **copy.deepcopy(dict(fields)),
    }
    if kind == "deferral":
        msg["smtp_events"] = [
            {
                "destination_ip": "192.0.2.25",
                "diag": "451 4.3.5 Temporarily unavailable, try again later.",
                "source_ip": "192.0.2.1",
                "ts": now,
                "type": "deferred",
                "size": 0,
            }
        ]
    if kind == "open":
        msg["opens"] = [{"ts": now}]
    return {**copy.deepcopy(dict(top)), "msg": msg, "_id": message_id, "ts": now}


def _sync_event(email: str, now: int) -> dict[str, Any]:
    return {
        "type": "blacklist",
        "action": "add",
        "reject": {
            "reason": "hard-bounce",
            "detail": _HARD_DIAG,
            "last_event_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),
            "email": email,
            "created_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),
            "expires_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now + 30 * 86400)),
            "expired": False,
            "subaccount": None,
            "sender": None,
        },
        "ts": now,
    }


def mandrill_batch(
    *events: str | Mapping[str, Any], email: str = "alice@example.com"
) -> list[dict[str, Any]]:
    """A batch of events: each a :func:`mandrill_event` kind name or an event of your own."""
    return [
        mandrill_event(item, email=email) if isinstance(item, str) else dict(item)
        for item in events
    ]


def _events_json(events: Sequence[Mapping[str, Any]] | str) -> str:
    if isinstance(events, str):
        return events
    # Compact, non-ASCII escaped: as PHP's json_encode writes it.
    return json.dumps([dict(event) for event in events], separators=(",", ":"))


def mandrill_body(events: Sequence[Mapping[str, Any]] | str) -> bytes:
    """The form body Mandrill posts: ``mandrill_events=`` and the URL-encoded JSON array.

    ``events`` is a list of events, or the ``mandrill_events`` value itself (a string).
    """
    return ("mandrill_events=" + quote_plus(_events_json(events))).encode("ascii")


def sign_request(
    events: Sequence[Mapping[str, Any]] | str, *, key: str | bytes, url: str
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of a webhook POST signed as Mandrill signs it.

    ``events``: a list of events, or the ``mandrill_events`` value itself;
    ``key``: the webhook's key; ``url``: the URL to sign, exactly as the
    route's ``Mandrill(url=...)`` names it (or as its requests arrive).
    """
    value = _events_json(events)
    secret = key.encode("utf-8") if isinstance(key, str) else key
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign_mandrill(secret, url=url, form={"mandrill_events": value}),
    }
    return headers, mandrill_body(value)


def empty_check_request(*, url: str) -> tuple[dict[str, str], bytes]:
    """Mandrill's empty check (:data:`EMPTY_CHECK`), signed with the public ``test-webhook`` key."""
    return sign_request("[]", key=TEST_KEY, url=url)


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None, url: str | None = None
) -> tuple[dict[str, str], bytes]:
    """A signed one-event batch of ``kind`` for ``bounce-middleware send --provider mandrill``.

    ``secret`` is the route's webhook key and ``url`` the URL signed: the
    route's ``url=``, or the URL the request is posted to. Both are required.
    """
    if not secret:
        raise ValueError("a Mandrill sample is signed with the route's webhook key: pass it")
    if not url:
        raise ValueError("a Mandrill signature covers the webhook URL: pass the URL to sign")
    return sign_request([mandrill_event(kind, email=email)], key=secret, url=url)
