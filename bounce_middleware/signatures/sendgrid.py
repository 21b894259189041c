"""SendGrid: ECDSA P-256 / SHA-256 over the timestamp header followed by the raw body.

The signature header is base64 of a DER (ASN.1 ``r, s``) signature; the key
is what SendGrid's UI and ``GET /v3/user/webhooks/event/settings/signed``
show: base64 of a DER SubjectPublicKeyInfo, without PEM armour
(providers.md, "SendGrid"). Needs the ``crypto`` extra (``cryptography``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from bounce_middleware.errors import ConfigurationError

from .common import (
    MAX_FUTURE,
    SignatureError,
    check_timestamp,
    decode_base64,
    header_value,
    require_cryptography,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: How old a signed timestamp may be, in seconds. SendGrid publishes no window
#: and does not say whether a retry is signed afresh; it retries for up to 24
#: hours after the event, so a window any shorter could refuse a retry that
#: kept its first timestamp and lose the events. 24 hours plus the clock skew.
MAX_AGE = 24 * 3600.0 + MAX_FUTURE

#: A DER P-256 signature is at most 72 bytes, 96 in base64: longer is not one.
_MAX_SIGNATURE_LENGTH = 128


def load_sendgrid_keys(
    keys: str | bytes | Iterable[str | bytes],
) -> tuple[EllipticCurvePublicKey, ...]:
    """Parse SendGrid verification keys: one, or several while rotating.

    Each is the base64 DER string SendGrid's UI shows (``MFkwEwYH...``) or the
    same key in PEM. Raises :class:`ConfigurationError` naming the entry's
    position when one is not a P-256 public key, and
    :class:`~bounce_middleware.ImproperlyInstalled` without ``cryptography``.
    """
    require_cryptography()
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_der_public_key,
        load_pem_public_key,
    )

    entries = [keys] if isinstance(keys, str | bytes) else list(keys)
    if not entries:
        raise ConfigurationError("no SendGrid public key configured")
    loaded = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, str | bytes):
            raise ConfigurationError(
                f"SendGrid public key {number} is {type(entry).__name__}, not a string"
            )
        data = entry.encode("ascii", "replace") if isinstance(entry, str) else entry
        try:
            if b"-----BEGIN" in data:
                key = load_pem_public_key(data.strip())
            else:
                key = load_der_public_key(base64.b64decode(b"".join(data.split()), validate=True))
        except (ValueError, TypeError, binascii.Error):
            raise ConfigurationError(
                f"SendGrid public key {number} is not the base64 key SendGrid shows "
                "(or that key in PEM)"
            ) from None
        except UnsupportedAlgorithm:
            key = None  # e.g. a curve OpenSSL does not know: refused just below
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ConfigurationError(f"SendGrid public key {number} is not a P-256 (ECDSA) key")
        loaded.append(key)
    return tuple(loaded)


def sign_sendgrid(private_key: EllipticCurvePrivateKey, body: bytes, *, timestamp: str) -> str:
    """The signature header SendGrid would send, from a (test) private key."""
    require_cryptography()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    der = private_key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode("ascii")


def verify_sendgrid(
    keys: Sequence[EllipticCurvePublicKey],
    body: bytes,
    *,
    signature: str | None,
    timestamp: str | None,
    max_age: float = MAX_AGE,
    now: float | None = None,
) -> None:
    """Check a signed SendGrid Event Webhook POST; raise :class:`SignatureError` if not authentic.

    ``keys`` from :func:`load_sendgrid_keys`; ``body`` the raw bytes received
    (SendGrid's end in ``\\r\\n``: re-serialised JSON never verifies);
    ``signature`` and ``timestamp`` the two headers' values (None when absent).
    Keys are tried in turn and the first that verifies ends the loop: they are
    public, so how long it takes reveals nothing secret.
    """
    require_cryptography()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = header_value(
        signature, what=f"{SIGNATURE_HEADER} header", max_length=_MAX_SIGNATURE_LENGTH
    )
    timestamp = header_value(timestamp, what=f"{TIMESTAMP_HEADER} header")
    check_timestamp(timestamp, max_age=max_age, now=now, what=TIMESTAMP_HEADER)
    der = decode_base64(signature, what=f"{SIGNATURE_HEADER} header")
    data = timestamp.encode("ascii") + body
    algorithm = ec.ECDSA(hashes.SHA256())
    for key in keys:
        try:
            key.verify(der, data, algorithm)
        except InvalidSignature:
            continue
        return
    raise SignatureError("SendGrid signature does not verify with any configured public key")
