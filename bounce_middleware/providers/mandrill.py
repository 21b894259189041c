"""Mandrill (Mailchimp Transactional): batches of message and sync events, signed over the URL.

Mandrill posts a form with one field, ``mandrill_events`` (a JSON array of up
to 1,000 events, about once a minute), and signs it in ``X-Mandrill-Signature``:
base64 HMAC-SHA1, with the webhook's key, of the webhook URL **exactly as
entered in Mandrill** followed by every form field, sorted by name
(:mod:`bounce_middleware.signatures.mandrill`). Facts and sources:
``docs/providers.md``, "Mandrill"; the events: :mod:`.mandrill_events`.

The trap: behind a TLS-terminating proxy (or a load balancer that rewrites the
host, or a webhook URL holding ``user:password@``), the URL the application
rebuilds (``http://internal-host/...``) is not the one Mandrill signed, and
every request fails with 401. Configure ``url=`` with the URL as pasted into
Mandrill; without it the request's own URL is used.

Saving a webhook, Mandrill first sends a HEAD to the URL, answered 200 before
any authentication; if that failed, it posts ``mandrill_events=[]`` signed
with the public key ``test-webhook``, which is accepted for that empty batch
only. The signature has no timestamp: the store's de-duplication is the only
defence against a replayed batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import urlsplit

from bounce_middleware.errors import ConfigurationError, PayloadError, Unauthorized
from bounce_middleware.request import WebhookRequest
from bounce_middleware.signatures.common import SignatureError, load_secrets
from bounce_middleware.signatures.mandrill import SIGNATURE_HEADER, TEST_KEY, verify_mandrill

from .base import Parsed
from .mandrill_events import (
    ACKNOWLEDGED_EVENTS,
    EVENT_KINDS,
    INBOUND_REASON,
    SYNC_KINDS,
    parse_fields,
    parse_mandrill,
)
from .mandrill_form import EVENTS_FIELD, FormError, decode_form, is_empty_batch

__all__ = [
    "ACKNOWLEDGED_EVENTS",
    "EVENT_KINDS",
    "HEAD_CHECK",
    "INBOUND_REASON",
    "SYNC_KINDS",
    "Mandrill",
    "parse_mandrill",
]

#: The 200 answer's reason for Mandrill's HEAD check of a webhook URL.
HEAD_CHECK = "Mandrill's webhook URL check"

_MEMO = "mandrill"  # WebhookRequest.memo key of the decoded form (or why it is none)
# Short enough for the whole reason to fit in a log line (200 characters).
_PROXY_HINT = (
    " (checked over the request's own URL: behind a proxy, set url= to the URL entered in Mandrill)"
)


class Mandrill:
    """Mandrill's webhooks, checked with the webhook's key over the URL Mandrill calls.

    ``key``: the webhook's key, shown beside the webhook in Mandrill's
    settings (each webhook has its own); several (a list, or one
    whitespace-separated string) while rotating. No key is a
    :class:`~bounce_middleware.ConfigurationError`. ``url``: the webhook URL
    exactly as entered in Mandrill (scheme, host, port, path, trailing slash,
    query, any ``user:password@``); without it, the URL of each request is
    used, which differs behind a TLS-terminating proxy (every request then
    fails with 401).
    """

    name = "mandrill"
    #: HEAD: Mandrill checks a webhook URL with one when the webhook is saved.
    methods: frozenset[str] = frozenset({"POST", "HEAD"})
    refuse_status = 400
    retry_status: int | None = None  # Mandrill retries a failed batch; 500 and 503 stand
    #: A batch holds up to 1,000 events, form-encoded (every quote is three bytes): about
    #: 2 MB of opens, more with bounces' SMTP transcripts. Larger than the default limit,
    #: which would answer 413 to a full batch, and Mandrill would send it again forever.
    max_body_size: int = 10 * 1024 * 1024
    #: Constructor keywords as flat settings read them (``bounce.mandrill.key``).
    options: ClassVar[Mapping[str, str]] = MappingProxyType({"key": "list", "url": "str"})

    def __init__(self, *, key: str | Iterable[str], url: str | None = None) -> None:
        entries = key.split() if isinstance(key, str) else key
        if isinstance(entries, Iterable) and not isinstance(entries, str | bytes):
            # A key pasted with its newline would fail every request: strip each.
            entries = [e.strip() if isinstance(e, str) else e for e in entries]
        self.keys = load_secrets(entries, what="Mandrill webhook key")
        if TEST_KEY in self.keys:
            raise ConfigurationError(
                "Mandrill key 'test-webhook' is Mandrill's public test key, which anyone can "
                "sign with: configure the webhook's own key (shown in Mandrill's webhook settings)"
            )
        self.url = None if url is None else public_url(url)

    def check_headers(self, request: WebhookRequest) -> None:
        """Refuse a POST without a signature before its body (up to 1,000 events) is read."""
        if request.method != "HEAD" and not (request.header(SIGNATURE_HEADER) or "").strip():
            raise Unauthorized(f"missing {SIGNATURE_HEADER} header")

    def authenticate(self, request: WebhookRequest) -> None:
        """Verify ``X-Mandrill-Signature`` over the URL and the form; a HEAD passes unchecked.

        Mandrill's empty check (``mandrill_events=[]``) may be signed with the
        public key ``test-webhook`` as well as with a configured key.
        """
        if request.method == "HEAD":
            return  # Mandrill's URL check carries no signature and must get 200
        fields = _form(request)
        if isinstance(fields, FormError):
            raise Unauthorized(f"{fields.reason}: no Mandrill signature to verify")
        keys = self.keys
        if is_empty_batch(fields.get(EVENTS_FIELD)) and len(fields) == 1:
            keys = (*keys, TEST_KEY)
        try:
            verify_mandrill(
                keys,
                url=self.url or request.url,
                form=fields,
                signature=request.header(SIGNATURE_HEADER),
            )
        except SignatureError as exc:
            hint = _PROXY_HINT if self.url is None and "does not match" in exc.reason else ""
            raise Unauthorized(exc.reason + hint) from None

    def parse(self, request: WebhookRequest) -> Parsed:
        """The batch's events; a HEAD and the empty batch are handshakes answered 200."""
        if request.method == "HEAD":
            return Parsed(handshake=HEAD_CHECK)
        fields = _form(request)
        if isinstance(fields, FormError):
            raise PayloadError(fields.reason)
        return parse_fields(fields)


def _form(request: WebhookRequest) -> dict[str, str] | FormError:
    """The request's form fields, decoded once for both authenticate and parse."""
    found = request.memo.get(_MEMO)
    if found is None:
        try:
            found = decode_form(request.body)
        except FormError as exc:
            found = exc
        request.memo[_MEMO] = found
    if isinstance(found, FormError):
        return found
    fields: dict[str, str] = found
    return fields


def public_url(url: object) -> str:
    """``url`` checked to be an absolute http(s) URL; surrounding whitespace is dropped.

    Nothing else is changed: Mandrill signs the URL character for character.
    The URL is never quoted in an error (it may hold ``user:password@``).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"Mandrill url must be a string, not {type(url).__name__}")
    url = url.strip()
    if not url.isprintable() or any(c.isspace() for c in url):
        raise ConfigurationError("Mandrill url holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = None
    if parts is None or not port_ok or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "Mandrill url must be an absolute http(s) URL: the webhook URL exactly as "
            "entered in Mandrill (e.g. https://example.com/hooks/mandrill)"
        )
    return url
