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
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import Bounce

from .base import (
    JSON_DECODER,
    Parsed,
    Rejection,
    explain_refused_integer,
    freeze_arrays,
    holds_surrogate,
    json_type,
    load_json_object,
)

__all__ = [
    "JSON_SPACE",
    "RejectionBodies",
    "event_body",
    "freeze_event",
    "load_json_array",
    "load_object_or_array",
    "may_hold_surrogates",
    "parse_event_list",
    "received_events",
    "split_json_array",
]


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


#: The whitespace JSON allows around a value.
JSON_SPACE = b" \t\n\r"


def load_object_or_array(
    body: bytes, *, expected: str
) -> tuple[Mapping[str, Any] | list[Any], bytes]:
    """Decode a body that is one event object or a JSON array of events (Mailjet, Brevo).

    Returns the decoded value, a read-only mapping (as
    :func:`~.base.load_json_object` makes it) or a list (as
    :func:`load_json_array`), and the body's JSON text without a byte-order
    mark and surrounding whitespace: a lone object as received. ``expected``
    ends the reason given for an empty body. Raises :class:`PayloadError`.
    """
    text = body[3:] if body[:3] == codecs.BOM_UTF8 else body
    text = text.strip(JSON_SPACE)
    if not text:
        raise PayloadError(f"body is empty; {expected}")
    if text[:1] == b"[":
        return load_json_array(body, expected=expected), text
    return load_json_object(body), text


#: Reads one decoded event of a batch: a Bounce, or the name of an acknowledged event;
#: raises PayloadError to refuse that event alone. The flag: whether to look for surrogates.
EventReader = Callable[[Any, bool], Bounce | str]


def parse_event_list(
    items: Sequence[Any],
    body: bytes,
    read_event: EventReader,
    *,
    wrap: Callable[[bytes], bytes] | None = None,
) -> Parsed:
    """Read every event of a batch: Bounces, acknowledged names, and events refused alone.

    ``items`` were decoded from ``body`` (the JSON array as received);
    ``read_event`` reads one. An event it refuses becomes a
    :class:`~bounce_middleware.providers.base.Rejection` whose body is that
    event alone as ``[event]``, passed through ``wrap`` when the provider's
    bodies hold the array in another envelope (Mandrill's form field); the
    rest of the batch proceeds.
    """
    check_surrogates = may_hold_surrogates(body)
    events: list[Bounce] = []
    acknowledged: list[str] = []
    rejected: list[Rejection] = []
    bodies: RejectionBodies | None = None
    for index, item in enumerate(items):
        try:
            outcome = read_event(item, check_surrogates)
        except (PayloadError, RecursionError) as exc:
            reason = exc.reason if isinstance(exc, PayloadError) else "event is nested too deeply"
            if bodies is None:
                bodies = RejectionBodies(body)
            kept = bodies.of(index, item)
            rejected.append(Rejection(kept if wrap is None else wrap(kept), reason))
        else:
            if isinstance(outcome, str):
                acknowledged.append(outcome)
            else:
                events.append(outcome)
    return Parsed(tuple(events), tuple(acknowledged), tuple(rejected))


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
    # One pass: freeze_arrays returns a mapping holding no list as it is.
    frozen: Mapping[str, Any] = freeze_arrays(event)
    return frozen


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
        raise PayloadError("event is nested too deeply") from None


class RejectionBodies:
    """The bodies kept for the events of one batch refused alone, each ``[event]``.

    An event is written back from its decoded value when it can be. One
    nested too deeply to write back (the decoder reads deeper than the
    encoder writes) is kept as the text it arrived as, cut out of the batch,
    so that ``replay`` refuses it again for the same reason; refusing the
    whole batch instead would make the provider retry every good event beside
    it. The batch is scanned for that text once, and only if needed.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._received: list[str] | None = None

    def of(self, index: int, event: Any) -> bytes:
        """The body to keep for the ``index``-th event of the batch, decoded as ``event``."""
        try:
            return event_body(event)
        except PayloadError:
            pass
        if self._received is None:
            self._received = received_events(self._body)
        if index < len(self._received):
            return ("[" + self._received[index] + "]").encode("utf-8")
        # Not found again (not expected: the batch decoded once already). The whole
        # batch: replay refuses it again for this event, and dispatches nothing.
        return self._body


def received_events(body: bytes) -> list[str]:
    """Each element of a JSON array body as the text it arrived as (``[]`` if unreadable)."""
    split = split_json_array(body)
    return [] if split is None else split[1]


def split_json_array(body: bytes) -> tuple[list[Any], list[str]] | None:
    """A JSON array body's elements, decoded, and each as the text it arrived as.

    One pass of the C scanner, element by element: a provider that keeps each
    event's own text (Mandrill) decodes the batch once, not twice. None when
    the body is not a well-formed JSON array: :func:`load_json_array` says why.
    """
    if body[:3] == codecs.BOM_UTF8:
        body = body[3:]
    try:
        text = body.decode("utf-8")
        at = _skip_space(text, 0)
        if text[at : at + 1] != "[":
            return None
        values: list[Any] = []
        found: list[str] = []
        decode = JSON_DECODER.raw_decode
        at = _skip_space(text, at + 1)
        if text[at : at + 1] == "]":
            return (values, found) if not text[at + 1 :].strip(_JSON_SPACE_TEXT) else None
        while True:
            value, end = decode(text, at)
            values.append(value)
            found.append(text[at:end])
            at = _skip_space(text, end)
            separator = text[at : at + 1]
            if separator == "]":
                break
            if separator != ",":
                return None
            at = _skip_space(text, at + 1)
        if text[at + 1 :].strip(_JSON_SPACE_TEXT):
            return None  # something after the array
        return values, found
    except (ValueError, RecursionError):
        return None


def _skip_space(text: str, at: int) -> int:
    while text[at : at + 1] in _JSON_SPACE_CHARS:
        at += 1
    return at


_JSON_SPACE_TEXT = JSON_SPACE.decode("ascii")
_JSON_SPACE_CHARS = frozenset(_JSON_SPACE_TEXT)


def _plain(value: object) -> object:
    # What the decoder made read-only, written back as the JSON object it was.
    if type(value) is MappingProxyType or isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


# Built once: json.dumps with options builds an encoder per call.
_UTF8_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain)
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_plain)
