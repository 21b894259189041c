"""What every signature check shares: the one exception, secrets, base64, time windows.

Every check in this package is a small function over values taken from the
request exactly as received (the raw body, header strings, decoded form
fields), in the manner of svix's ``Webhook.verify``: one call that returns
quietly or raises :class:`SignatureError`. Nothing here reads a request, logs
or touches the network; the providers do, and map ``SignatureError`` to 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import time
from collections.abc import Iterable

from bounce_middleware.errors import BounceError, ConfigurationError, ImproperlyInstalled

#: How far ahead of our clock a signed timestamp may be, in seconds. The
#: sender's clock and ours drift; five minutes is the Standard Webhooks /
#: svix tolerance, and nobody signs a timestamp in the future on purpose.
MAX_FUTURE = 300.0

#: Longest decimal timestamp read (13 digits reach the year 318857): a longer
#: string is refused before ``int()`` spends time on it.
_MAX_TIMESTAMP_DIGITS = 13


class SignatureError(BounceError, ValueError):
    """A webhook request is not authentic: a missing, malformed, wrong or stale signature.

    ``reason`` is one line, safe to log: it names the check that failed and
    never quotes a secret, a signature or the body. The client is only told
    "not authenticated" (DESIGN.md, "Security rules").
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require_cryptography() -> None:
    """Raise :class:`ImproperlyInstalled` unless ``cryptography`` can be imported.

    Called first by every function that needs it, so the core and the HMAC
    providers never import it, and a missing extra says which one to install.
    """
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise ImproperlyInstalled("crypto", "cryptography") from None


def load_secrets(secrets: str | bytes | Iterable[str | bytes], *, what: str) -> tuple[bytes, ...]:
    """The HMAC keys of ``secrets`` as bytes: one string, or several for rotation.

    ``what`` names the setting in errors (``"Mailgun signing key"``). Text is
    encoded as UTF-8, the way the providers' own examples encode it. Raises
    :class:`ConfigurationError` when there is none, or an entry is empty or not
    text, naming the entry's position and never the secret: a check with no key
    must fail closed when the provider is built, not accept every request.
    """
    entries: list[str | bytes]
    if isinstance(secrets, str | bytes):
        entries = [secrets]
    elif secrets is None or not isinstance(secrets, Iterable):
        raise ConfigurationError(f"no {what} configured (got {type(secrets).__name__})")
    else:
        entries = list(secrets)
    keys = []
    for number, entry in enumerate(entries, start=1):
        if isinstance(entry, str):
            try:
                entry = entry.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigurationError(f"{what} {number} is not valid UTF-8 text") from None
        if not isinstance(entry, bytes):
            raise ConfigurationError(f"{what} {number} is {type(entry).__name__}, not a string")
        if not entry.strip():
            raise ConfigurationError(f"{what} {number} is empty")
        keys.append(entry)
    if not keys:
        raise ConfigurationError(f"no {what} configured")
    return tuple(keys)


def matches_any(expected: Iterable[bytes], given: Iterable[bytes]) -> bool:
    """Whether any ``given`` value equals any ``expected`` one, compared in constant time.

    Every pair is compared, with no early exit, so the time taken tells an
    attacker neither which secret matched nor how many are configured.
    """
    candidates = tuple(given)
    found = False
    for digest in expected:
        for candidate in candidates:
            # |= rather than "or": the comparison runs even after a match.
            found |= hmac.compare_digest(digest, candidate)
    return found


def decode_base64(value: str, *, what: str) -> bytes:
    """Decode a standard base64 signature strictly; raise :class:`SignatureError`.

    ASCII whitespace is dropped first: some senders wrap base64 every 60 or 76
    characters (the published SNS vector does), and no character that matters
    is whitespace. Anything else outside the alphabet is refused.
    """
    if not value.isascii():
        raise SignatureError(f"{what} is not base64")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except binascii.Error:
        raise SignatureError(f"{what} is not base64") from None


def parse_unix_timestamp(value: str | int, *, what: str = "timestamp") -> int:
    """A signed Unix time in seconds, given as a decimal string (or an int from JSON).

    Only ASCII digits are read: ``int()`` would also take ``" 1"``, ``"+1"``,
    ``"1_0"`` and Arabic-Indic digits, none of which a provider sends.
    """
    if isinstance(value, bool):  # bool is an int subclass: True is not a time
        raise SignatureError(f"{what} is not a Unix time in seconds")
    if isinstance(value, int):
        if value < 0:
            raise SignatureError(f"{what} is not a Unix time in seconds")
        return value
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= _MAX_TIMESTAMP_DIGITS
        or not (value.isascii() and value.isdigit())
    ):
        raise SignatureError(f"{what} is not a Unix time in seconds")
    return int(value)


def check_timestamp(
    timestamp: str | int | float,
    *,
    max_age: float,
    max_future: float = MAX_FUTURE,
    now: float | None = None,
    what: str = "timestamp",
) -> float:
    """Refuse a signed timestamp that is stale or too far in the future; return it in seconds.

    ``timestamp`` is a Unix time in seconds: a decimal string as sent in a
    header or a JSON field, or a number already parsed (SNS's ISO 8601 time).
    It may be at most ``max_age`` seconds old and ``max_future`` seconds ahead
    of ``now`` (default: the current time; tests inject it). Each provider's
    window is a constant beside its check, with the reason for its value.
    """
    if isinstance(timestamp, float):
        if not math.isfinite(timestamp):
            raise SignatureError(f"{what} is not a finite time")
        seconds = timestamp
    else:
        seconds = float(parse_unix_timestamp(timestamp, what=what))
    current = time.time() if now is None else now
    age = current - seconds
    if age > max_age:
        raise SignatureError(f"{what} is stale: {age:.0f} s old, the window is {max_age:.0f} s")
    if -age > max_future:
        raise SignatureError(
            f"{what} is {-age:.0f} s in the future, at most {max_future:.0f} s is allowed"
        )
    return seconds


def header_value(value: str | None, *, what: str, max_length: int = 4096) -> str:
    """A required header's value, or :class:`SignatureError` naming the missing header.

    Providers pass ``headers.get(name)`` straight in; the length cap keeps a
    hostile header from costing more than a real one.
    """
    if value is None or not value.strip():
        raise SignatureError(f"missing {what}")
    if len(value) > max_length:
        raise SignatureError(f"{what} is longer than {max_length} characters")
    return value.strip()
