"""Resend: e-mail events posted by Svix, one JSON object ``{"type", "created_at", "data"}``.

Requests are signed by Svix (:mod:`bounce_middleware.signatures.svix`): base64
HMAC-SHA256 of ``{svix-id}.{svix-timestamp}.{raw body}`` with the webhook's
``whsec_`` signing secret, in ``svix-signature`` (several ``v1,`` values while
Svix rotates); the timestamp must be within 5 minutes either way. The
unbranded Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) are read when the ``svix-*`` ones are absent.

De-duplication: ``svix-id`` is the same on every retry of an event, so it is
the event id (``resend:<svix-id>``). Facts and sources: ``docs/providers.md``,
"Resend"; the kinds and fields: :mod:`.resend_events`.

Statuses: Resend retries any non-2xx (at once, then 5 s, 5 min, 30 min, 2 h,
5 h, 10 h, 10 h), so DESIGN's statuses stand: 400 for a body that can never
be accepted (kept as a rejected record), 500/503 for our failures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import ClassVar

from bounce_middleware.errors import ConfigurationError, PayloadError, Unauthorized
from bounce_middleware.request import WebhookRequest
from bounce_middleware.signatures.common import SignatureError, check_timestamp, header_value
from bounce_middleware.signatures.svix import TOLERANCE, load_svix_secrets, verify_svix

from .base import POST_ONLY, Parsed, load_json_object
from .resend_events import (
    BOUNCE_TYPE_KINDS,
    EVENT_KINDS,
    MAX_ID_LENGTH,
    SUPPRESSED_SUBTYPES,
    check_id,
    parse_resend,
    replay_envelope,
)

__all__ = [
    "BOUNCE_TYPE_KINDS",
    "EVENT_KINDS",
    "SUPPRESSED_SUBTYPES",
    "Resend",
    "parse_resend",
    "replay_envelope",
]

#: The header families carrying the signature: Svix's, then the unbranded ones.
SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")
UNBRANDED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class Resend:
    """Resend's webhooks, checked with the webhook's Svix signing secret.

    ``secret``: the signing secret Resend shows with the webhook
    (``whsec_...``); several (a list, or one whitespace-separated string)
    while rotating. No secret is a :class:`~bounce_middleware.ConfigurationError`.
    ``tolerance``: how far the signed timestamp may be from our clock, either
    way, in seconds (Svix's own 300; Svix signs every retry afresh).
    ``clock``: the time source, for tests.
    """

    name = "resend"
    methods = POST_ONLY
    refuse_status = 400
    retry_status: int | None = None  # Resend retries any non-2xx: 500 and 503 stand
    options: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"secret": "list", "tolerance": "float"}
    )

    def __init__(
        self,
        *,
        secret: str | Iterable[str] | None = None,
        tolerance: float = TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is None or (isinstance(secret, str) and not secret.strip()):
            raise ConfigurationError(
                "Resend: no secret (the webhook's signing secret, whsec_...) configured: "
                "the route refuses to run unauthenticated"
            )
        entries = secret.split() if isinstance(secret, str) else secret
        try:
            self.keys = load_svix_secrets(entries)
        except ConfigurationError as exc:
            raise ConfigurationError(f"Resend: {exc}") from None
        if type(tolerance) not in (int, float) or not math.isfinite(tolerance) or not tolerance > 0:
            raise ConfigurationError("Resend: tolerance must be a positive number of seconds")
        self.tolerance = float(tolerance)
        self.clock = clock

    def check_headers(self, request: WebhookRequest) -> None:
        """The signature headers' presence and timestamp, checked before the body is read."""
        msg_id, timestamp, signature, family = _signature_headers(request)
        try:
            header_value(msg_id, what=f"{family}-id header", max_length=MAX_ID_LENGTH)
            header_value(signature, what=f"{family}-signature header")
            check_timestamp(
                header_value(timestamp, what=f"{family}-timestamp header"),
                max_age=self.tolerance,
                max_future=self.tolerance,
                now=self.clock(),
                what=f"{family}-timestamp",
            )
        except SignatureError as exc:
            raise Unauthorized(exc.reason) from None

    def authenticate(self, request: WebhookRequest) -> None:
        """Verify the Svix signature over the raw body; raise Unauthorized if it is not Resend's."""
        msg_id, timestamp, signature, family = _signature_headers(request)
        try:
            verify_svix(
                self.keys,
                request.body,
                msg_id=msg_id,
                timestamp=timestamp,
                signature=signature,
                tolerance=self.tolerance,
                now=self.clock(),
            )
        except SignatureError as exc:
            reason = exc.reason if family == "svix" else exc.reason.replace("svix-", "webhook-")
            raise Unauthorized(reason) from None

    def parse(self, request: WebhookRequest) -> Parsed:
        """The event (or its acknowledged type); PayloadError when it can never be accepted.

        The event id is the ``svix-id`` (or ``webhook-id``) header; a body
        replayed without headers carries it in its replay envelope.
        """
        msg_id = (_signature_headers(request)[0] or "").strip()
        return parse_resend(request.body, msg_id or None)

    def kept_body(self, request: WebhookRequest) -> bytes:
        """The body kept for a request refused as a whole: with its svix-id, when it can.

        ``replay`` parses kept bodies without headers; enveloped, an event
        accepted after an upgrade is keyed ``resend:<svix-id>`` as Resend's own
        retries are, so it is not applied twice.
        """
        msg_id = (_signature_headers(request)[0] or "").strip()
        try:
            check_id(msg_id)
            load_json_object(request.body)  # only an object can be embedded as one
        except PayloadError:
            return request.body
        return replay_envelope(msg_id, request.body)


def _signature_headers(request: WebhookRequest) -> tuple[str | None, str | None, str | None, str]:
    """The id, timestamp and signature headers, and the family name ("svix", "webhook")."""
    header = request.header
    msg_id, timestamp, signature = (header(name) for name in SVIX_HEADERS)
    if msg_id is None and timestamp is None and signature is None:
        unbranded = [header(name) for name in UNBRANDED_HEADERS]
        if any(value is not None for value in unbranded):
            return unbranded[0], unbranded[1], unbranded[2], "webhook"
    return msg_id, timestamp, signature, "svix"
