"""Mailgun: ``failed``, ``complained``, ``unsubscribed`` and ``rejected`` webhooks.

Mailgun posts one JSON object per event, ``{"signature": {...}, "event-data":
{...}}``, and signs only the ``signature`` block (timestamp + token, HMAC-SHA256
with the account's HTTP webhook signing key), not the body: authenticity is the
signature, a timestamp window and a memory of accepted tokens. Facts and
sources: ``docs/providers.md``, "Mailgun".

Statuses: Mailgun retries everything but 200 and 406 for about 8 hours, so a
body that can never be accepted is answered 406 (Mailgun drops it; the store
keeps it as a rejected record).

The token memory is per process (:class:`~bounce_middleware.signatures.SeenTokens`):
a replay sent to another worker or after a restart still verifies, and the
store's de-duplication by event key is then what keeps it from running twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from bounce_middleware.errors import PayloadError, Unauthorized
from bounce_middleware.request import WebhookRequest
from bounce_middleware.signatures import SeenTokens, SignatureError, load_secrets, verify_mailgun
from bounce_middleware.signatures.mailgun import MAX_AGE

from .base import POST_ONLY, BasicCredentials, Parsed, load_json_object
from .mailgun_events import (
    ACKNOWLEDGED_EVENTS,
    EVENT_KINDS,
    FAILED_KINDS,
    SUPPRESSED_REASON_PREFIX,
    parse_decoded,
    parse_mailgun,
)
from .mailgun_form import LEGACY_MEDIA_TYPES, form_fields, media_type

__all__ = [
    "ACKNOWLEDGED_EVENTS",
    "EVENT_KINDS",
    "FAILED_KINDS",
    "FINAL_STATUSES",
    "LEGACY_REASON",
    "SUPPRESSED_REASON_PREFIX",
    "Mailgun",
    "parse_mailgun",
]

#: Answers after which Mailgun never sends the request again: its token stays spent.
FINAL_STATUSES = frozenset({200, 406})

LEGACY_REASON = (
    "a legacy Mailgun webhook (form post, pre-2018 format): in Mailgun's dashboard, "
    "replace it with a current webhook (Sending > Webhooks), which posts JSON"
)

_MEMO = "mailgun"  # WebhookRequest.memo key of what authenticate verified


@dataclass(frozen=True, slots=True)
class _Verified:
    """What ``authenticate`` learnt, for ``parse`` and ``answered`` of the same request."""

    data: Mapping[str, Any] | None  # the decoded body; None for a legacy form post
    token: str  # remembered in SeenTokens by this request
    refusal: str | None  # authentic, but can never be accepted: parse says why


class Mailgun:
    """Mailgun's webhooks (current JSON format), checked with the HTTP webhook signing key.

    ``signing_key``: the account's "HTTP webhook signing key" from Mailgun's
    dashboard (account-wide, not per domain; not the API key); several (a list,
    or one whitespace-separated string) while rotating; surrounding whitespace
    is ignored. No key is a :class:`~bounce_middleware.ConfigurationError`.
    ``credentials``: optional HTTP Basic ``user:password`` entries, put in the
    webhook URL as well. ``max_age``: how old a signed timestamp may be
    (seconds; Mailgun resends a failed delivery for about 8 hours, reportedly
    with the same signature, so the default is 9 hours); an accepted token is
    refused again for as long. ``clock``: the time source, for tests.
    """

    name = "mailgun"
    methods = POST_ONLY
    #: Mailgun retries 400 and 401 for 8 hours and drops the request only on 406.
    refuse_status = 406
    retry_status: int | None = None  # DESIGN's 500 and 503: Mailgun retries both
    options: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"signing_key": "list", "credentials": "list", "realm": "str", "max_age": "float"}
    )

    def __init__(
        self,
        *,
        signing_key: str | Sequence[str],
        credentials: Iterable[str] | None = None,
        realm: str = "bounce-middleware",
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        entries = signing_key.split() if isinstance(signing_key, str) else signing_key
        if isinstance(entries, Iterable) and not isinstance(entries, str | bytes):
            # A key pasted with its newline would fail every request: strip each.
            entries = [e.strip() if isinstance(e, str) else e for e in entries]
        self.keys = load_secrets(entries, what="Mailgun signing key")
        self.basic = None if credentials is None else BasicCredentials(credentials, realm=realm)
        self.max_age = float(max_age)
        self.seen = SeenTokens(window=self.max_age)
        self.clock = clock

    def check_headers(self, request: WebhookRequest) -> None:
        """The configured HTTP Basic credentials, checked before the body is read."""
        if self.basic is not None:
            self.basic.check(request)

    def authenticate(self, request: WebhookRequest) -> None:
        """Verify the body's signature block; raise Unauthorized if it is not Mailgun's.

        A token already accepted within the window is refused (a replayed
        request). A legacy form post is verified the same way from its form
        fields; when authentic it is refused by ``parse`` (406, kept).
        """
        if self.basic is not None:
            self.basic.check(request)
        content_type = request.header("content-type") or ""
        refusal: str | None
        if media_type(content_type) in LEGACY_MEDIA_TYPES:
            data = None
            block: Mapping[str, Any] = form_fields(request.body, content_type)
            refusal, what = LEGACY_REASON, " (legacy form post)"
        else:
            data, refusal = _decode(request.body)
            if data is None:
                raise Unauthorized("body is not a JSON object: no Mailgun signature to verify")
            signature = data.get("signature")
            if not isinstance(signature, Mapping):
                raise Unauthorized("body has no Mailgun signature object")
            block, what = signature, ""
        token = block.get("token")
        try:
            verify_mailgun(
                self.keys,
                timestamp=block.get("timestamp"),
                token=token,
                signature=block.get("signature"),
                parent_signature=block.get("parent-signature"),
                seen=self.seen,
                max_age=self.max_age,
                now=self.clock(),
            )
        except SignatureError as exc:
            raise Unauthorized(exc.reason + what) from None
        assert isinstance(token, str)  # verify_mailgun refuses anything else
        request.memo[_MEMO] = _Verified(data, token, refusal)

    def answered(self, request: WebhookRequest, status: int) -> None:
        """Forget the request's token unless Mailgun will never resend it (200 or 406).

        Mailgun is reported to resend a failed delivery with its original
        signature block; the token must not refuse that retry.
        """
        verified = request.memo.get(_MEMO)
        if isinstance(verified, _Verified) and status not in FINAL_STATUSES:
            self.seen.forget(verified.token)

    def parse(self, request: WebhookRequest) -> Parsed:
        """One event (or an acknowledged one); PayloadError when it can never be accepted."""
        verified = request.memo.get(_MEMO)
        if isinstance(verified, _Verified):
            if verified.refusal is not None:
                raise PayloadError(verified.refusal)
            assert verified.data is not None  # no refusal: the body decoded
            return parse_decoded(verified.data, request.body)
        # Not authenticated here (a stored body replayed): read the request afresh.
        if media_type(request.header("content-type") or "") in LEGACY_MEDIA_TYPES:
            raise PayloadError(LEGACY_REASON)
        return parse_mailgun(request.body)


def _decode(body: bytes) -> tuple[Mapping[str, Any] | None, str | None]:
    """The body as a JSON object, and why it can never be accepted (None: it can).

    A body the strict reader refuses (not UTF-8, a lone surrogate, a huge integer)
    is read leniently too: if its signature verifies, Mailgun sent it, and it is
    answered 406 and kept rather than 401 (which Mailgun would retry for hours).
    """
    try:
        return load_json_object(body), None
    except PayloadError as exc:
        try:
            data = json.loads(body.decode("utf-8", "replace").lstrip("\ufeff"), parse_int=str)
        except (ValueError, RecursionError):
            return None, None
        return (data, exc.reason) if isinstance(data, dict) else (None, None)
