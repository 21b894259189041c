"""SparkPost (Bird): event webhooks, a JSON array of ``{"msys": {...}}`` elements per POST.

Facts, fields and the kind table follow SparkPost's webhook and bounce
classification references (``docs/providers.md``, "SparkPost"). SparkPost
signs nothing: a webhook authenticates with HTTP Basic credentials
(``auth_type`` basic) or an OAuth 2.0 bearer token (``auth_type`` oauth2,
``Authorization: Bearer ...``; the deprecated ``X-MessageSystems-Webhook-Token``
header carries a bare token and is accepted too). When a webhook is created
or validated SparkPost posts the ping ``[{"msys": {}}]`` and creates it only
if the answer is 200: a ping (or an empty array) is a handshake, nothing
dispatched. One malformed element of a batch is kept alone as a rejected
record; the rest of the batch proceeds.

Fields: ``id`` is ``event_id``, and the key adds a digest of ``message_id``
(or ``transmission_id``), type, timestamp and ``rcpt_to`` (SparkPost's own
samples give one ``event_id`` to a batch's distinct events; without an
``event_id`` the key is that digest alone);
``email`` is ``raw_rcpt_to`` (the address as sent) or ``rcpt_to`` (lower
case); ``message_id`` is ``transmission_id``, the id SparkPost's
Transmissions API answered (SparkPost's own ``message_id`` stays in
``raw``); ``type`` is the event type; ``details`` is ``raw_reason`` or
``reason`` (IPs masked); ``smtp_status`` is the enhanced status code in that
text (``"5.1.1"``), if any (``error_code``, the SMTP reply code ``"554"`` or
SparkPost's own code on a generation failure, stays in ``raw``); ``tags`` are
``rcpt_tags`` then ``campaign_id``;
``metadata`` are the string values of ``rcpt_meta``; ``raw`` is the event
inside ``msys`` (its class, e.g. ``message_event``, is in ``body``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from bounce_middleware.errors import PayloadError
from bounce_middleware.header_auth import HeaderAuth
from bounce_middleware.request import WebhookRequest

from .base import POST_ONLY, Parsed
from .json_batch import load_json_array, may_hold_surrogates, parse_event_list
from .sparkpost_events import is_ping, read_event

__all__ = ["BATCH_HEADER", "TOKEN_HEADER", "SparkPost", "parse_sparkpost"]

#: The deprecated header in which SparkPost sends a webhook's bare auth token.
TOKEN_HEADER = "X-MessageSystems-Webhook-Token"
#: Identifies a batch; its retries repeat it. Events are de-duplicated by their own keys.
BATCH_HEADER = "X-MessageSystems-Batch-ID"


class SparkPost:
    """SparkPost's event webhooks, behind HTTP Basic credentials and/or bearer tokens.

    ``credentials`` are ``user:password`` strings: the user name and password
    of the webhook's "Basic Auth" authentication in SparkPost. ``tokens`` are
    the access tokens that the token URL of its "OAuth 2.0" authentication
    hands out (SparkPost sends them as ``Authorization: Bearer <token>``); a
    token in the legacy ``X-MessageSystems-Webhook-Token`` header is accepted
    too. Give either or both (a request carrying any one is accepted, so a
    webhook can move from one to the other); neither is a
    :class:`~bounce_middleware.ConfigurationError`. Wrong or missing ones are
    refused 401 before the body is read.
    """

    name: str = "sparkpost"
    methods: frozenset[str] = POST_ONLY
    refuse_status: int = 400
    retry_status: int | None = None
    #: Constructor keywords as flat settings read them (``bounce.sparkpost.tokens``).
    options: ClassVar[Mapping[str, str]] = {
        "credentials": "credentials",
        "tokens": "list",
        "realm": "str",
    }

    def __init__(
        self,
        *,
        credentials: Iterable[str] | None = None,
        tokens: str | Iterable[str] | None = None,
        realm: str = "bounce-middleware",
    ) -> None:
        self.auth = HeaderAuth(
            credentials=credentials,
            tokens=tokens,
            realm=realm,
            provider="SparkPost",
            token_headers=(TOKEN_HEADER,),
        )

    def check_headers(self, request: WebhookRequest) -> None:
        """The credentials or token, checked before the body is read."""
        self.auth.check(request)

    def authenticate(self, request: WebhookRequest) -> None:
        """The credentials or token (checked once per request)."""
        self.auth.check(request)

    def parse(self, request: WebhookRequest) -> Parsed:
        """The batch's events; malformed elements alone are rejections; PayloadError otherwise."""
        return parse_sparkpost(request.body)


def parse_sparkpost(body: bytes) -> Parsed:
    """Parse one SparkPost webhook body: a JSON array of ``{"msys": {...}}`` elements.

    The creation/validation ping ``[{"msys": {}}]`` and an empty array are
    handshakes (answered 200). Each element becomes a
    :class:`~bounce_middleware.Bounce` (its ``body`` the element alone, as
    ``[element]``), an acknowledged event name, or a
    :class:`~bounce_middleware.providers.base.Rejection`.
    """
    items = load_json_array(body, expected='SparkPost posts a JSON array of {"msys": ...} events')
    if not items:
        return Parsed(handshake="empty batch: no events")
    if all(is_ping(item) for item in items):
        return Parsed(handshake="SparkPost ping: no events")
    if len(items) == 1:
        # One element (most posts outside busy hours): the body as received is that
        # element alone, so the Bounce keeps it rather than a copy written out again.
        try:
            outcome = read_event(items[0], may_hold_surrogates(body), body)
        except (PayloadError, RecursionError):
            pass  # refused alone below, as in any batch
        else:
            if isinstance(outcome, str):
                return Parsed(acknowledged=(outcome,))
            return Parsed(events=(outcome,))
    return parse_event_list(items, body, read_event)
