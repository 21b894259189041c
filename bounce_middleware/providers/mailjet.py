"""Mailjet: the Event API (event callback URL), single events and grouped batches.

Mailjet signs nothing. Its event URL carries HTTP Basic credentials
(``https://user:password@host/path``), which Mailjet sends with every POST,
so the route requires them and checks them before the body is read. Mailjet
retries any answer but 200 every 30 seconds for 24 hours; a body that can
never be accepted is answered 400 and kept as a rejected record. Parsing,
fields and the de-duplication key: :mod:`.mailjet_events`; facts and sources:
``docs/providers.md``, section 4, "Mailjet".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.request import WebhookRequest

from .base import POST_ONLY, BasicCredentials, Parsed
from .mailjet_events import (
    ACKNOWLEDGED_EVENTS,
    BLOCKED_ERROR_KINDS,
    EVENT_KINDS,
    parse_mailjet,
)

__all__ = ["ACKNOWLEDGED_EVENTS", "BLOCKED_ERROR_KINDS", "EVENT_KINDS", "Mailjet", "parse_mailjet"]


class Mailjet:
    """Mailjet's Event API, behind the HTTP Basic credentials put in the event URL.

    ``credentials`` are ``"user:password"`` strings (several while rotating),
    the ones written into the URL pasted in Mailjet (Account settings > Event
    notifications, or ``/v3/REST/eventcallbackurl``):
    ``https://user:password@example.com/hooks/mailjet``. They are required:
    with no signature, they are the whole authentication. ``realm`` is shown
    by clients in the Basic challenge.
    """

    name: str = "mailjet"
    methods: frozenset[str] = POST_ONLY
    refuse_status: int = 400
    retry_status: int | None = None
    #: Constructor keywords as flat settings read them (``bounce.mailjet.credentials``).
    options: ClassVar[Mapping[str, str]] = {"credentials": "credentials", "realm": "str"}

    def __init__(self, *, credentials: Iterable[str], realm: str = "bounce-middleware") -> None:
        if credentials is None:
            raise ConfigurationError(
                "Mailjet: credentials is None — is the environment variable that holds them "
                "set? Mailjet signs nothing: the user:password in its event URL is the only check"
            )
        self.basic = BasicCredentials(credentials, realm=realm)

    def authenticate(self, request: WebhookRequest) -> None:
        """Check the HTTP Basic credentials; raise Unauthorized with a challenge."""
        self.basic.check(request)

    # The same check, run by the front before it reads the body (once per request: memo).
    check_headers = authenticate

    def parse(self, request: WebhookRequest) -> Parsed:
        """The events of one object or a grouped array; PayloadError when it is neither."""
        return parse_mailjet(request.body)
