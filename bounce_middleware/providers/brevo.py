"""Brevo (formerly Sendinblue): transactional webhooks, one event per POST or batched.

Facts and traps: ``docs/providers.md``, "Brevo". Brevo signs nothing: a
request carries HTTP Basic credentials from the webhook URL
(``https://user:password@host/path``) or the bearer token configured on the
webhook; either is accepted when both are configured.

**Bodies.** One JSON object per event; with ``batched: true`` a webhook sends up
to 500 events every 5 minutes. Brevo publishes no batched sample, so a JSON
array of event objects is read as the batch (each event refused alone if it
must be); an empty array is answered 200. An object with ``items`` (Brevo's
inbound-parse webhook) is refused, kept as a rejected record.

**De-duplication.** Brevo gives no event id (``id`` is the webhook's, the same
on every event), so :attr:`Bounce.dedup_id` is the JSON list
``[message-id, event, email, ts_epoch]`` as sent (without ``ts_epoch``:
``[message-id, event, email, null, "ts_event", value]``, or ``"ts"``), and the
key is ``brevo:dedup-sha256:<digest>``: a retried event is applied once.

**Fields.** ``bounced_at`` from ``ts_epoch`` (UTC; milliseconds, or seconds in
some doc samples, told apart by magnitude), else ``ts_event`` or ``ts``;
``date`` is in the account's timezone and stays in ``raw``. ``message_id`` is
``message-id`` (with its ``<>``); ``details`` is ``reason`` without its leading
space, and ``smtp_status`` the enhanced status code in it (``"5.1.1"``), if
any; ``tags`` come from ``tags`` or from ``tag`` (a JSON-encoded list, one
tag, or a template's name); ``metadata`` from ``X-Mailin-custom``: a JSON
object of strings is the metadata, anything else is kept whole under the key
``"X-Mailin-custom"``.

**Answers.** Brevo retries only timeouts, connection errors and 429, four times
(10 min, 1 h, 2 h, 8 h), and drops an event on any other 4xx or any 5xx. So
``retry_status`` is 429: the receiver answers a failing handler or an
unavailable store with 429 instead of 500/503, and the event stays unfinished
in the store, where ``bounce-middleware replay`` finishes it if Brevo gives up.
A 400 (a body that can never be accepted) is dropped by Brevo but kept here as
a rejected record. A 401 (wrong credentials or token) is dropped by Brevo too,
and nothing can keep it: check the webhook's URL or token after any change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from bounce_middleware.errors import PayloadError
from bounce_middleware.header_auth import HeaderAuth
from bounce_middleware.request import WebhookRequest

from .base import POST_ONLY, Parsed
from .brevo_events import read_event
from .json_batch import load_object_or_array, parse_event_list

__all__ = ["Brevo", "parse_brevo"]

#: Brevo answers 429 with retries; every other failure status loses the event.
RETRY_STATUS = 429


class Brevo:
    """Brevo's transactional webhook, behind HTTP Basic credentials and/or a bearer token.

    ``credentials`` are ``"user:password"`` strings for a webhook URL of the
    form ``https://user:password@host/path``; ``tokens`` the bearer token(s)
    configured on the webhook (several while rotating). Give either or both;
    neither is a :class:`~bounce_middleware.ConfigurationError`. ``realm`` names
    the Basic challenge.
    """

    name: str = "brevo"
    methods: frozenset[str] = POST_ONLY
    refuse_status: int = 400
    retry_status: int | None = RETRY_STATUS
    #: Constructor keywords as flat settings read them (``bounce.brevo.tokens``).
    options: ClassVar[Mapping[str, str]] = {
        "credentials": "credentials", "tokens": "list", "realm": "str",
    }  # fmt: skip

    def __init__(
        self,
        *,
        credentials: Iterable[str] | None = None,
        tokens: str | Iterable[str] | None = None,
        realm: str = "bounce-middleware",
    ) -> None:
        self.auth = HeaderAuth(
            credentials=credentials, tokens=tokens, realm=realm, provider="Brevo"
        )

    def check_headers(self, request: WebhookRequest) -> None:
        """The credentials or token, checked before the body is read."""
        self.auth.check(request)

    def authenticate(self, request: WebhookRequest) -> None:
        """The credentials or token (checked once per request)."""
        self.auth.check(request)

    def parse(self, request: WebhookRequest) -> Parsed:
        """The request's events; a batch's malformed events alone are rejections."""
        return parse_brevo(request.body)


def parse_brevo(body: bytes) -> Parsed:
    """Parse one Brevo webhook body: an event object, or a JSON array of them.

    Each event becomes a :class:`~bounce_middleware.Bounce` (whose ``body`` is
    the event alone as ``[event]``), or an acknowledged event name. A single
    event that can never be accepted raises :class:`PayloadError`; in an array
    it becomes a :class:`~bounce_middleware.providers.base.Rejection`.
    """
    data, received = load_object_or_array(
        body, expected="Brevo posts a JSON object or an array of them"
    )
    if type(data) is list:
        if not data:
            return Parsed(handshake="empty batch: no events")
        return parse_event_list(data, body, read_event)
    if "event" not in data and "items" in data:
        raise PayloadError(
            "an inbound-parse payload (items), not a transactional event: "
            "point Brevo's inbound webhook at another URL"
        )
    try:
        # load_json_object refused lone surrogates already; the Bounce keeps the
        # event as received, in brackets, which parse reads again.
        outcome = read_event(data, False, received)
    except RecursionError:
        raise PayloadError("event is nested too deeply") from None
    if isinstance(outcome, str):
        return Parsed(acknowledged=(outcome,))
    return Parsed(events=(outcome,))
