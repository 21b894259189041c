"""Mailgun: lowercase hex HMAC-SHA256 of ``timestamp + token`` with the webhook signing key.

The three values sit in the JSON body's ``signature`` object; the body itself
is not signed (providers.md, "Mailgun"), so replay protection is a timestamp
window plus a memory of accepted tokens (:class:`~.replay.SeenTokens`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from .common import SignatureError, check_timestamp, matches_any, parse_unix_timestamp
from .replay import SeenTokens

#: How old a signed timestamp may be, in seconds. Mailgun retries a failed
#: delivery for about 8 hours (5 m, 10 m, 15 m, 1 h, 2 h, 4 h: 7 h 30 m; an
#: older copy of its docs adds up to 8 h 05 m), and third parties report that a
#: retry carries the original signature block. A shorter window (Mailgun's PHP
#: sample uses 15 s) would refuse every retry and lose the event, so: 9 hours.
MAX_AGE = 9 * 3600.0

#: Mailgun's tokens are 50 characters; anything far longer is not Mailgun's,
#: and the cap bounds what one entry of the replay memory can cost.
MAX_TOKEN_LENGTH = 256

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def mailgun_digest(key: bytes, timestamp: str, token: str) -> bytes:
    """The raw HMAC-SHA256 that Mailgun hex-encodes as ``signature``."""
    return hmac.new(key, (timestamp + token).encode("utf-8"), hashlib.sha256).digest()


def sign_mailgun(key: bytes, *, timestamp: str, token: str) -> str:
    """The ``signature`` value Mailgun would send (for tests and ``send``)."""
    return mailgun_digest(key, timestamp, token).hex()


def verify_mailgun(
    keys: Sequence[bytes],
    *,
    timestamp: object,
    token: object,
    signature: object,
    parent_signature: object = None,
    seen: SeenTokens | None = None,
    max_age: float = MAX_AGE,
    now: float | None = None,
) -> None:
    """Check a Mailgun signature block; raise :class:`SignatureError` if it is not authentic.

    ``keys``: the HTTP webhook signing keys as bytes (several while rotating;
    see :func:`~.common.load_secrets`). ``timestamp``, ``token``, ``signature``
    and ``parent_signature``: the body's ``signature.*`` values as parsed from
    JSON, passed unchecked (a missing or non-string value is refused here).
    ``parent_signature`` is set on subaccount events and signed with the parent
    account's key, so a parent account's key verifies them too.

    With ``seen``, a token accepted before within the window is refused, and a
    token is recorded only once its signature verified. ``now`` is injectable.
    """
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)  # the docs type it int; the signed text is its digits
    if not isinstance(timestamp, str):
        raise SignatureError("missing signature timestamp")
    if not isinstance(token, str) or not token:
        raise SignatureError("missing signature token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise SignatureError(f"signature token is longer than {MAX_TOKEN_LENGTH} characters")
    if not token.isascii():  # Mailgun's are hex; a "\ud800" escape must not reach encode()
        raise SignatureError("signature token is not ASCII")
    seconds = check_timestamp(parse_unix_timestamp(timestamp), max_age=max_age, now=now)
    given = [_hex_signature(signature, "signature")]
    if parent_signature is not None:
        given.append(_hex_signature(parent_signature, "parent-signature"))
    expected = [mailgun_digest(key, timestamp, token) for key in keys]
    if not matches_any(expected, given):
        raise SignatureError("Mailgun signature does not match any configured signing key")
    if seen is not None:
        seen.remember(token, timestamp=seconds, now=now)


def _hex_signature(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise SignatureError(f"missing {what}")
    if not _HEX_SHA256.fullmatch(value):
        raise SignatureError(f"{what} is not 64 hexadecimal digits")
    return bytes.fromhex(value)
