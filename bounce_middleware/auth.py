"""HTTP Basic authentication (RFC 7617), compared in constant time."""

from __future__ import annotations

import binascii
import hmac
from collections.abc import Iterable

from .errors import ConfigurationError


class BasicAuth:
    """Accepts any of several ``"user:password"`` credentials (for rotation).

    Comparison is on bytes with :func:`hmac.compare_digest`, against every
    configured credential, so the time taken does not reveal which one (if
    any) was close.
    """

    __slots__ = ("_expected",)

    def __init__(self, credentials: Iterable[str]) -> None:
        if isinstance(credentials, str):
            credentials = credentials.split()
        expected = []
        for credential in credentials:
            user, sep, password = credential.partition(":")
            if not sep or not user or not password:
                # Never echo the credential itself: it is a secret.
                raise ConfigurationError(
                    'each credential must be "user:password" with a non-empty user and password'
                )
            expected.append(credential.encode("utf-8"))
        if not expected:
            raise ConfigurationError(
                "no credentials configured: the bounce endpoint refuses to run unauthenticated"
            )
        self._expected: tuple[bytes, ...] = tuple(expected)

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
