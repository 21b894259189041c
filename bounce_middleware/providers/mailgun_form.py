"""The signature fields of a legacy Mailgun webhook (a form post), read cheaply.

Webhooks created before 2018-06-29 post form fields (``application/x-www-form-urlencoded``,
or ``multipart/form-data`` when they carry message parts) with ``timestamp``,
``token`` and ``signature`` at the top level. Only those three are read: the
post is refused anyway (providers/mailgun.py), but verifying it first tells an
authentic one (406, kept) from a forged one (401).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

#: The content types of a legacy (pre-2018) webhook.
LEGACY_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

SIGNATURE_FIELDS = frozenset({"timestamp", "token", "signature"})

_BOUNDARY = re.compile(r';\s*boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;"]{1,200}))', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'(?:^|[;\s])name\s*=\s*"([^"]{1,64})"', re.IGNORECASE)


def media_type(content_type: str) -> str:
    """``"multipart/form-data"`` of ``"Multipart/Form-Data; boundary=x"``."""
    return content_type.partition(";")[0].strip().lower()


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The ``timestamp``, ``token`` and ``signature`` fields found in a form body.

    Missing fields are simply absent; values are decoded as Latin-1 (never
    fails: a non-ASCII value is refused by the signature check).
    """
    if media_type(content_type) == "multipart/form-data":
        return _multipart_fields(body, content_type)
    text = body.decode("latin-1")
    pairs = parse_qsl(text, keep_blank_values=True, encoding="latin-1")
    return {name: value for name, value in pairs if name in SIGNATURE_FIELDS}


def _multipart_fields(body: bytes, content_type: str) -> dict[str, str]:
    found = _BOUNDARY.search(content_type)
    if found is None:
        return {}
    boundary = (found.group(1) or found.group(2)).encode("latin-1", "replace")
    fields: dict[str, str] = {}
    for part in body.split(b"--" + boundary)[1:]:
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        named = _FIELD_NAME.search(head)
        if named is None:
            continue
        name = named.group(1).decode("latin-1")
        if name in SIGNATURE_FIELDS and name not in fields:
            fields[name] = content.removesuffix(b"\r\n").decode("latin-1")
    return fields
