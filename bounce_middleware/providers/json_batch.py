"""Batches posted as one JSON array: decoding the array, and each event on its own.

SendGrid posts a JSON array of events (SparkPost, Mailjet's grouped events
and Mandrill do too). One malformed event must not refuse the batch, so the
array is decoded once here, each event is checked and frozen on its own, and
an event can be written back alone as ``[event]``: the body its
:class:`~bounce_middleware.Bounce` or
:class:`~bounce_middleware.providers.base.Rejection` keeps, which the
provider's ``parse`` reads again (``bounce-middleware replay``).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError

from .base import (
    JSON_DECODER,
    explain_refused_integer,
    freeze_arrays,
    holds_list,
    holds_surrogate,
    json_type,
)

__all__ = ["event_body", "freeze_event", "load_json_array", "may_hold_surrogates"]


def load_json_array(body: bytes, *, expected: str = "a JSON array") -> list[Any]:
    """Decode a body that must be a JSON array; objects in it become read-only mappings.

    Arrays inside events stay lists until :func:`freeze_event` (only the
    events kept need it). ``expected`` ends the reason given for a body of
    another type (``"SendGrid posts a JSON array of events"``). Raises
    :class:`PayloadError` with a one-line reason that never quotes the body.
    """
    if body[:3] == codecs.BOM_UTF8:
        body = body[3:]
    try:
        # Explicitly UTF-8: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 encoded JSON") from None
    if not text.strip():
        raise PayloadError(f"body is empty; {expected}")
    try:
        data = JSON_DECODER.decode(text)
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, PayloadError):
            raise
        if not isinstance(exc, json.JSONDecodeError):
            explain_refused_integer(text)  # an integer too long for int(): say so
        raise PayloadError("body is not valid JSON") from None
    if type(data) is not list:
        kind = json_type(data)
        shown = "JSON null" if kind == "null" else "a JSON " + kind
        raise PayloadError(f"body is {shown}; {expected}")
    items: list[Any] = data
    return items


def may_hold_surrogates(body: bytes) -> bool:
    """Whether any event of ``body`` needs :func:`freeze_event`'s surrogate check.

    A lone UTF-16 surrogate can only arrive as a ``\\uD8xx`` escape: strict
    UTF-8 decoding refuses one written out.
    """
    return b"\\ud" in body or b"\\uD" in body


def freeze_event(event: Mapping[str, Any], *, check_surrogates: bool) -> Mapping[str, Any]:
    """One decoded event made fully read-only (arrays as tuples), to keep as ``raw``.

    Raises :class:`PayloadError` when it holds an unpaired UTF-16 surrogate
    (only looked for when ``check_surrogates``): no UTF-8 text can hold one,
    so a store, a log or a handler would fail on it at every retry.
    """
    if check_surrogates and holds_surrogate(event):
        raise PayloadError("event holds an unpaired UTF-16 surrogate escape")
    if holds_list(event):
        frozen: Mapping[str, Any] = freeze_arrays(event)
        return frozen
    return event


def event_body(event: Any) -> bytes:
    """One event alone as the compact JSON array ``[event]``.

    UTF-8, except for an event holding a lone surrogate, which is written
    with ASCII escapes as it was received. Raises :class:`PayloadError` only
    for an event nested too deeply to write back.
    """
    try:
        text = _UTF8_ENCODER.encode([event])
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return _ASCII_ENCODER.encode([event]).encode("ascii")
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None


def _plain(value: object) -> object:
    # What the decoder made read-only, written back as the JSON object it was.
    if type(value) is MappingProxyType or isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


# Built once: json.dumps with options builds an encoder per call.
_UTF8_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain)
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_plain)
