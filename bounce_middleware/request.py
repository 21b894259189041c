"""The request every provider sees: no WSGI, no ASGI, just what was received."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One request to a webhook route, as received (the sans-IO core's input).

    ``headers`` has lower-case names (``"x-twilio-email-event-webhook-signature"``);
    ``body`` holds the exact bytes received, which signatures are checked over;
    ``url`` is the full URL the provider called (Mandrill signs it), ``path``
    the route it matched. ``memo`` is scratch space for the provider: what
    ``authenticate`` decoded (a JSON envelope), ``parse`` reads again there
    instead of decoding the body twice.
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS)
    body: bytes = b""
    url: str = ""
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        return self.headers.get(name.lower())


def post(
    path: str = "/", body: bytes = b"", headers: Mapping[str, str] | None = None, url: str = ""
) -> WebhookRequest:
    """A POST request, for tests and replays: header names are lower-cased here."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    return WebhookRequest("POST", path, MappingProxyType(lowered), body, url or path)
