"""Bearer tokens (RFC 6750), and HTTP Basic or a token, as SparkPost and Brevo send them.

Compared in constant time, every configured secret every time, as
:class:`~bounce_middleware.auth.BasicAuth` compares credentials.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable

from .auth import EXAMPLE_SECRETS, BasicCredentials
from .errors import ConfigurationError, Unauthorized
from .request import WebhookRequest
from .text import article

logger = logging.getLogger("bounce_middleware")


#: Below this many characters a bearer token draws a warning, as a short password does.
MIN_TOKEN_LENGTH = 16


def token_list(tokens: object, *, what: str = "token") -> list[bytes]:
    """The bearer tokens of ``tokens`` (one whitespace-separated string, or an iterable), checked.

    Raises :class:`ConfigurationError` naming the entry's position, never its value.
    """
    if tokens is None:
        raise ConfigurationError(
            f"{what}s is None — is the environment variable that holds them set?"
        )
    if isinstance(tokens, str):
        tokens = tokens.split()
    elif isinstance(tokens, bytes | bytearray) or not isinstance(tokens, Iterable):
        raise ConfigurationError(
            f"{what}s must be a list of strings, not {article(type(tokens).__name__)}"
        )
    checked = []
    for number, token in enumerate(tokens, start=1):
        if not isinstance(token, str):
            raise ConfigurationError(
                f"{what} {number} is {article(type(token).__name__)}, not a string"
            )
        token = token.strip()
        # RFC 6750's token68 characters: anything else cannot arrive in the header.
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise ConfigurationError(f"{what} {number} must be printable ASCII without spaces")
        checked.append(token.encode("ascii"))
    if not checked:
        raise ConfigurationError(f"no {what}s configured: the route refuses to run unauthenticated")
    return checked


class HeaderAuth:
    """HTTP Basic credentials and/or bearer tokens: a request carrying any one is accepted.

    For providers that authenticate with a header only (SparkPost, Brevo):
    ``credentials`` are ``"user:password"`` strings (a webhook URL of the form
    ``https://user:password@host/path``), ``tokens`` the bearer tokens sent
    as ``Authorization: Bearer <token>`` (and, for providers that still send
    one, in ``token_headers`` such as SparkPost's legacy
    ``X-MessageSystems-Webhook-Token``). Both may be configured while moving
    from one to the other; neither is a :class:`ConfigurationError`. Every
    configured secret is compared, with no early exit. A request is checked
    once (the memo), like :class:`BasicCredentials`.
    """

    __slots__ = ("basic", "tokens", "token_headers", "challenge", "_unauthorized")

    def __init__(
        self,
        *,
        credentials: Iterable[str] | None = None,
        tokens: str | Iterable[str] | None = None,
        realm: str = "bounce-middleware",
        provider: str = "this provider",
        token_headers: tuple[str, ...] = (),
    ) -> None:
        if credentials is None and tokens is None:
            raise ConfigurationError(
                f"{provider}: no credentials and no tokens configured: "
                "the route refuses to run unauthenticated"
            )
        if not isinstance(realm, str) or '"' in realm or "\\" in realm:
            raise ConfigurationError("realm must not contain quotes or backslashes")
        self.basic = None if credentials is None else BasicCredentials(credentials, realm=realm)
        self.tokens: tuple[bytes, ...] = () if tokens is None else tuple(token_list(tokens))
        for number, token in enumerate(self.tokens, start=1):
            if len(token) < MIN_TOKEN_LENGTH or token.decode() in EXAMPLE_SECRETS:
                logger.warning(
                    "bounce-middleware configuration: %s token %d is short or published in "
                    "bounce-middleware's examples; use a long random one",
                    provider,
                    number,
                )
        self.token_headers = tuple(name.lower() for name in token_headers)
        # Basic is challenged (SNS-style clients send credentials only after one);
        # a bearer-only route answers with the RFC 6750 challenge.
        if self.basic is not None:
            self.challenge = self.basic.challenge
        else:
            self.challenge = f'Bearer realm="{realm}"'

    def check(self, request: WebhookRequest) -> None:
        """Return quietly, or raise Unauthorized with the challenge."""
        memo = request.memo
        if memo.get("header-auth") is self:
            return
        headers = request.headers
        header = headers.get("authorization")
        accepted = False
        if self.basic is not None:
            accepted = self.basic.auth.check(header)
        if self.tokens and not accepted:
            given = [bearer_token(header)]
            given += [_ascii(headers.get(name)) for name in self.token_headers]
            for supplied in given:
                if supplied:
                    for expected in self.tokens:
                        accepted |= hmac.compare_digest(supplied, expected)
        if not accepted:
            raise Unauthorized("missing or wrong credentials or token", challenge=self.challenge)
        memo["header-auth"] = self


def bearer_token(header: str | None) -> bytes:
    """The token of an ``Authorization: Bearer <token>`` value; empty if there is none."""
    if not header:
        return b""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return b""
    return _ascii(token)


def _ascii(value: str | None) -> bytes:
    # Configured tokens are printable ASCII: anything else can never match.
    try:
        return value.strip().encode("ascii") if value else b""
    except UnicodeEncodeError:
        return b""
