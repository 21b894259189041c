"""Readers of event fields that the JSON providers share.

Each provider decodes its own envelope; what its events hold is read with
these: type names for one-line reasons, optional string fields, Unix times,
the enhanced status code of an SMTP reply, and the compact JSON text of the
values that identify an event (its ``dedup_id``) or of a metadata value that
is not a string. Every reader raises nothing but
:class:`~bounce_middleware.errors.PayloadError`, whose reason never quotes
the payload.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.text import article

from .base import json_type

__all__ = [
    "a",
    "check_strings",
    "compact_json",
    "enhanced_status",
    "identity_json",
    "not_an_object",
    "optional_string",
    "unix_time",
]


def a(value: object) -> str:
    """A decoded value's JSON type with its article, for reasons: "a string", "an array"."""
    return article(json_type(value))


def not_an_object(item: object) -> PayloadError:
    """The refusal of an element of a batch (or a body) that is no JSON object."""
    return PayloadError(f"an event is {article('JSON ' + json_type(item))}, not an object")


def optional_string(data: Mapping[str, Any], field: str, shown: str | None = None) -> str | None:
    """A field that is absent, null or a string (``""`` stays ``""``); else PayloadError.

    ``shown`` names the field in the reason when its path is longer
    (``"data.email_id"``).
    """
    value = data.get(field)
    if value is None or type(value) is str:
        return value
    raise PayloadError(f"field {shown or field} must be a string, not {a(value)}")


def check_strings(data: Mapping[str, Any], fields: Iterable[str]) -> None:
    """Refuse the event when one of ``fields`` holds anything but a string (or null)."""
    for field in fields:
        value = data.get(field)
        if value is not None and type(value) is not str:
            raise PayloadError(f"field {field} must be a string, not {a(value)}")


def unix_time(
    value: Any,
    field: str,
    *,
    digit_strings: bool = False,
    floats: bool = True,
    since_1970: bool = False,
    milliseconds_from: int | None = None,
    max_digits: int = 13,
    expected: str = "a Unix time in seconds",
    name_type: bool = True,
) -> datetime | None:
    """A Unix time as an aware UTC datetime; None when absent (null).

    What providers send differs, and each says so: ``digit_strings`` accepts
    ``"1700000000"`` (at most ``max_digits`` digits: longer is out of range
    before any conversion); ``floats`` accepts fractional seconds (else an
    integer only); ``since_1970`` refuses a time before the epoch;
    ``milliseconds_from``: a value at or above it (in magnitude) is in
    milliseconds, told apart from seconds by size. The reason for another
    type is ``field <field> must be <expected>``, followed by ``, not <its
    type>`` when ``name_type``.
    """
    if value is None:
        return None
    if digit_strings and type(value) is str and value.isascii() and value.isdigit():
        if len(value) > max_digits:
            raise PayloadError(f"field {field} is out of range")
        value = int(value)
    if type(value) is not int and not (floats and type(value) is float and math.isfinite(value)):
        shown = f", not {a(value)}" if name_type else ""
        raise PayloadError(f"field {field} must be {expected}{shown}")
    if since_1970 and value < 0:
        raise PayloadError(f"field {field} is out of range")
    try:
        if milliseconds_from is None or abs(value) < milliseconds_from:
            return datetime.fromtimestamp(value, UTC)
        if type(value) is int:  # exact: no float rounding of the milliseconds
            seconds, milliseconds = divmod(value, 1000)
            return datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=milliseconds)
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"field {field} is out of range") from None


# An enhanced status code (RFC 3463: class 2, 4 or 5, then 1-3 digits twice) standing
# alone: not a part of "10.2.4.5" (nothing before it but a separator) nor of "4.16.55.1"
# (no digit or ".digit" after it; a full stop ending the sentence is fine).
_ENHANCED_STATUS = re.compile(r"(?<![\w.])[245]\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")


def enhanced_status(text: str) -> str | None:
    """The first enhanced status code (``"5.1.1"``) in an SMTP reply or diagnostic, if any."""
    found = _ENHANCED_STATUS.search(text) if text else None
    return found.group() if found else None


def _plain(value: object) -> object:
    # What the decoder made read-only, written as the JSON object it was.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


# Built once: json.dumps with options builds an encoder per call. Not ASCII-escaped:
# the text is only digested (a key) or kept as a metadata value, both UTF-8.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain)
#: The encoder's own string writer (ensure_ascii=False), C-accelerated.
_encode_string = json.encoder.encode_basestring


def compact_json(value: object) -> str:
    """A decoded value as compact JSON text (a metadata value that is not a string).

    May raise RecursionError for a value nested some hundreds deep: the
    provider's ``parse`` turns it into a PayloadError.
    """
    scalar = _scalar_json(value)
    return scalar if scalar is not None else _ENCODER.encode(value)


def _scalar_json(value: object) -> str | None:
    # What the encoder writes for a string, an integer or a constant, without building an
    # encoder per call (JSONEncoder.encode does: ~5 µs, twice per event of a batch).
    if type(value) is str:
        return _encode_string(value)
    if type(value) is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    return None


def identity_json(values: Sequence[object]) -> str:
    """The ``dedup_id`` of an event without an event id: the JSON list of what identifies it.

    Only its digest reaches :attr:`~bounce_middleware.Bounce.key` (it may
    hold an address). For the providers added with this module (Mailjet,
    SparkPost, Brevo, Resend, Mandrill); the older ones keep their own
    format, so that no stored event is applied again after an upgrade.
    """
    parts = [_scalar_json(value) for value in values]
    if None in parts:  # a float, a list, an object: the encoder writes those
        return _ENCODER.encode(list(values))
    return "[" + ",".join(parts) + "]"  # type: ignore[arg-type]
