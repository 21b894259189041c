"""HTTP Basic authentication (RFC 7617), compared in constant time."""

from __future__ import annotations

import binascii
import hmac
import logging
from collections.abc import Iterable

from .errors import ConfigurationError, Unauthorized
from .request import WebhookRequest
from .text import article

logger = logging.getLogger("bounce_middleware")

#: Below this many characters a password draws a warning (Postmark has no signatures:
#: the Basic password is the whole authentication).
MIN_PASSWORD_LENGTH = 16

#: Passwords this project's README, examples, demo and tests show. Anyone can read
#: them, so one left in a deployment draws a warning (even the long ones).
EXAMPLE_SECRETS = frozenset(
    {
        "s3cret",
        "another-secret",
        "long-random-password",
        "retired-password",
        "password",
        "pw",
        "s3cret:with:colons-ünïcode",
        "s3cret:with@odd/chars",
    }
)

_NO_CREDENTIALS = "no credentials configured: the bounce endpoint refuses to run unauthenticated"


def credential_list(credentials: object) -> list[str]:
    """The ``"user:password"`` strings of ``credentials``, checked.

    ``credentials`` is an iterable of such strings, or one string of
    whitespace-separated entries. Raises :class:`ConfigurationError` naming the
    problem and the entry's position (never the secret itself): none at all,
    ``None`` (an unset environment variable), a non-string such as a
    ``("user", "pw")`` tuple, or an entry without a user or a password.
    """
    if credentials is None:
        raise ConfigurationError(
            "credentials is None — is the environment variable that should hold them set?"
        )
    if isinstance(credentials, str):
        credentials = credentials.split()
    elif isinstance(credentials, bytes | bytearray) or not isinstance(credentials, Iterable):
        raise ConfigurationError(
            'credentials must be a list of "user:password" strings, '
            f"not {article(type(credentials).__name__)}"
        )
    checked = []
    for number, credential in enumerate(credentials, start=1):
        if credential is None:
            raise ConfigurationError(
                f"credential {number} is None — is the environment variable set?"
            )
        if not isinstance(credential, str):
            raise ConfigurationError(
                f"credential {number} is {article(type(credential).__name__)}, "
                'not a "user:password" string (write ("user", "pw") as "user:pw")'
            )
        user, sep, password = credential.partition(":")
        if not sep or not user or not password:
            # Never echo the credential itself: it is a secret.
            raise ConfigurationError(
                f'credential {number} must be "user:password" with a non-empty user and password'
            )
        try:
            credential.encode("utf-8")
        except UnicodeEncodeError:
            # e.g. an environment variable holding bytes that are not UTF-8
            raise ConfigurationError(f"credential {number} is not valid UTF-8 text") from None
        checked.append(credential)
    if not checked:
        raise ConfigurationError(_NO_CREDENTIALS)
    return checked


def credential_warnings(credentials: object) -> list[str]:
    """One line per weak credential: a short password, or one this project publishes.

    The lines name the credential by position and user, never the password.
    Malformed credentials are :func:`credential_list`'s to refuse: skipped here.
    """
    try:
        entries = credential_list(credentials)
    except ConfigurationError:
        return []
    warnings = []
    for number, credential in enumerate(entries, start=1):
        user, _, password = credential.partition(":")
        if password in EXAMPLE_SECRETS:
            warnings.append(
                f"credential {number} (user {user!r}) uses a password published in "
                "bounce-middleware's examples; anyone can read it: set a long random one"
            )
        elif len(password) < MIN_PASSWORD_LENGTH:
            warnings.append(
                f"credential {number} (user {user!r}) has a password shorter than "
                f"{MIN_PASSWORD_LENGTH} characters; use a long random one "
                '(python -c "import secrets; print(secrets.token_urlsafe(24))")'
            )
    return warnings


class BasicAuth:
    """Accepts any of several ``"user:password"`` credentials (for rotation).

    Comparison is on bytes with :func:`hmac.compare_digest`, against every
    configured credential, so the time taken does not reveal which one (if
    any) was close. Bad configuration is refused as :func:`credential_list` says.
    """

    __slots__ = ("_expected",)

    def __init__(self, credentials: Iterable[str]) -> None:
        entries = credential_list(credentials)
        self._expected: tuple[bytes, ...] = tuple(c.encode("utf-8") for c in entries)

    def check(self, header: str | None) -> bool:
        """True when an ``Authorization`` header value carries an accepted credential."""
        supplied = decode_basic(header)
        if supplied is None:
            return False
        matched = False
        for expected in self._expected:
            # No early exit: every credential is compared every time.
            matched |= hmac.compare_digest(supplied, expected)
        return matched


class BasicCredentials:
    """HTTP Basic authentication of a provider's requests (Postmark; optional elsewhere).

    Accepts any of ``credentials`` (:class:`BasicAuth`); a request without one
    raises :class:`~bounce_middleware.errors.Unauthorized` carrying the
    ``WWW-Authenticate`` challenge (Amazon SNS sends credentials only after one).
    Weak credentials are logged as warnings once, here.
    """

    __slots__ = ("auth", "realm", "challenge")

    def __init__(self, credentials: Iterable[str], *, realm: str = "bounce-middleware") -> None:
        if not isinstance(realm, str) or '"' in realm or "\\" in realm:
            raise ConfigurationError("realm must not contain quotes or backslashes")
        entries = credential_list(credentials)  # once: it may be an iterator
        self.auth = BasicAuth(entries)
        for warning in credential_warnings(entries):
            logger.warning("bounce-middleware configuration: %s", warning)
        self.realm = realm
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'

    def check(self, request: WebhookRequest) -> None:
        """Return quietly, or raise Unauthorized with the challenge.

        A request is checked once: the WSGI front checks before reading the body,
        and the request with the body shares that request's ``memo``.
        """
        memo = request.memo
        if memo.get("basic-credentials") is self:
            return
        if not self.auth.check(request.headers.get("authorization")):
            raise Unauthorized("missing or wrong credentials", challenge=self.challenge)
        memo["basic-credentials"] = self


def decode_basic(header: str | None) -> bytes | None:
    """Return the ``user:password`` bytes of a Basic header, or None if it is malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # WSGI hands headers over as latin-1 str; base64 is ASCII.
        raw = binascii.a2b_base64(token.strip().encode("ascii"), strict_mode=True)
        raw.decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        return None
    if b":" not in raw:
        return None
    return raw
