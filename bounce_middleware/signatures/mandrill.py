"""Mandrill: ``X-Mandrill-Signature`` = base64 HMAC-SHA1 of the URL and the sorted POST fields.

The signed data is the webhook URL exactly as configured in Mandrill (scheme,
host, port, path, trailing slash, query) followed by each POST field, sorted
by name, as ``name + value`` with no separator (providers.md, "Mandrill"). It
has no timestamp, so no replay window: the store's de-duplication is the only
defence against a replay.

Behind a TLS-terminating proxy the URL the application sees (``http://...``)
differs from the one Mandrill signed, so the URL is configured, never rebuilt
from the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

from .common import SignatureError, decode_base64, header_value, matches_any

SIGNATURE_HEADER = "X-Mandrill-Signature"

#: The literal key Mandrill signs its empty ``mandrill_events=[]`` check with
#: when a webhook is saved and the HEAD request was not answered 200.
TEST_KEY = b"test-webhook"

Form: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]


def mandrill_signed_data(url: str, form: Form) -> bytes:
    """The bytes Mandrill signs: ``url`` then every ``name + value``, sorted by name.

    ``form`` is the decoded POST fields: a mapping, or the pairs of
    ``urllib.parse.parse_qsl(body, keep_blank_values=True)``. A field given
    twice is refused: Mandrill sends each once, and if the check and the parser
    read different copies, a signed request with a second, unsigned field
    added would pass the check and be parsed from the attacker's copy.
    """
    pairs = list(form.items()) if isinstance(form, Mapping) else list(form)
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise SignatureError("a form field appears more than once")
    # Sorted by name only (stable), as PHP's ksort() in Mandrill's own example.
    pairs.sort(key=lambda pair: pair[0])
    try:
        return (url + "".join(name + value for name, value in pairs)).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: nothing Mandrill sends or signs
        raise SignatureError("a form field is not valid Unicode") from None


def sign_mandrill(key: bytes, *, url: str, form: Form) -> str:
    """The ``X-Mandrill-Signature`` value Mandrill would send (for tests and ``send``)."""
    digest = hmac.new(key, mandrill_signed_data(url, form), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_mandrill(keys: Sequence[bytes], *, url: str, form: Form, signature: str | None) -> None:
    """Check a Mandrill webhook POST; raise :class:`SignatureError` if it is not authentic.

    ``keys``: the webhook keys as bytes (several while rotating, see
    :func:`~.common.load_secrets`; add :data:`TEST_KEY` only to accept
    Mandrill's empty check); ``url``: the exact URL configured in Mandrill;
    ``form``: the decoded POST fields; ``signature``: the header's value.
    Every key is compared, with no early exit.
    """
    signature = header_value(signature, what=f"{SIGNATURE_HEADER} header", max_length=256)
    given = decode_base64(signature, what=f"{SIGNATURE_HEADER} header")
    data = mandrill_signed_data(url, form)
    expected = [hmac.new(key, data, hashlib.sha1).digest() for key in keys]
    if not matches_any(expected, [given]):
        raise SignatureError("Mandrill signature does not match any configured key")
