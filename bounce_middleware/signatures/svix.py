"""Svix (Resend): base64 HMAC-SHA256 of ``{svix-id}.{svix-timestamp}.{raw body}``.

The secret is ``whsec_`` + base64 of the key bytes. ``svix-signature`` holds
one or more space-separated ``v1,<base64>`` entries (several while Svix
rotates the secret, and other versions such as ``v1a`` that are skipped); one
must match. The unbranded Standard Webhooks headers (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``) carry the same scheme.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence

from bounce_middleware.errors import ConfigurationError

from .common import SignatureError, check_timestamp, header_value, load_secrets, matches_any

ID_HEADER = "svix-id"
TIMESTAMP_HEADER = "svix-timestamp"
SIGNATURE_HEADER = "svix-signature"

#: Svix's own tolerance, both ways (providers.md, "Resend"): Svix signs every
#: attempt afresh, so a retry hours later still carries a current timestamp.
TOLERANCE = 300.0

_PREFIX = "whsec_"
#: A message id longer than this is not Svix's (theirs are ~30 characters).
_MAX_ID_LENGTH = 256


def load_svix_secrets(secrets: str | Iterable[str]) -> tuple[bytes, ...]:
    """The HMAC keys of one ``whsec_...`` secret or several (rotation), decoded.

    The ``whsec_`` prefix is optional, as in Svix's own library. Raises
    :class:`ConfigurationError` naming the entry's position, never its value.
    """
    keys = []
    for number, raw in enumerate(load_secrets(secrets, what="Svix secret"), start=1):
        text = raw.decode("utf-8").strip().removeprefix(_PREFIX)
        try:
            # Svix's secrets are padded; tolerate a copy that lost its "=".
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f'Svix secret {number} is not "whsec_" followed by base64'
            ) from None
        if not key:
            raise ConfigurationError(f"Svix secret {number} is empty")
        keys.append(key)
    return tuple(keys)


def svix_digest(key: bytes, body: bytes, *, msg_id: str, timestamp: str) -> bytes:
    """The raw HMAC-SHA256 over ``msg_id.timestamp.body`` (the body's exact bytes)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode("ascii"), hashlib.sha256)
    mac.update(body)
    return mac.digest()


def sign_svix(key: bytes, body: bytes, *, msg_id: str, timestamp: str) -> str:
    """One ``svix-signature`` entry, ``v1,<base64>`` (for tests and ``send``)."""
    digest = svix_digest(key, body, msg_id=msg_id, timestamp=timestamp)
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_svix(
    keys: Sequence[bytes],
    body: bytes,
    *,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a Svix-signed request; raise :class:`SignatureError` if it is not authentic.

    ``keys`` from :func:`load_svix_secrets`; ``body`` the raw bytes received
    (never re-serialised JSON); ``msg_id``, ``timestamp`` and ``signature`` the
    ``svix-id``, ``svix-timestamp`` and ``svix-signature`` header values (None
    when absent). The timestamp must be within ``tolerance`` seconds of
    ``now``, either way. Every configured key is compared with every ``v1``
    entry, with no early exit.
    """
    msg_id = header_value(msg_id, what=f"{ID_HEADER} header", max_length=_MAX_ID_LENGTH)
    timestamp = header_value(timestamp, what=f"{TIMESTAMP_HEADER} header")
    signature = header_value(signature, what=f"{SIGNATURE_HEADER} header")
    if not msg_id.isascii() or not msg_id.isprintable():
        raise SignatureError(f"{ID_HEADER} header is not printable ASCII")
    check_timestamp(
        timestamp, max_age=tolerance, max_future=tolerance, now=now, what=TIMESTAMP_HEADER
    )
    given = []
    for entry in signature.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric), not ours to check
        try:
            given.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue  # one garbled entry must not hide a valid one beside it
    if not given:
        raise SignatureError(f"{SIGNATURE_HEADER} header has no v1 signature")
    expected = [svix_digest(key, body, msg_id=msg_id, timestamp=timestamp) for key in keys]
    if not matches_any(expected, given):
        raise SignatureError("Svix signature does not match any configured secret")
