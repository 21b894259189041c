"""What every provider module implements, and the JSON reading they share."""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import Bounce


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed record that is acknowledged but not dispatched (e.g. an Open)."""

    record_type: str


Parsed: TypeAlias = Bounce | Ignored


class Provider(Protocol):
    """Turns a webhook body into a Bounce, an Ignored record, or a PayloadError."""

    name: str

    def parse(self, body: bytes) -> Parsed:
        """Parse one request body; raise :class:`PayloadError` when it can never be accepted."""
        ...


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"body is not valid JSON ({name} is not allowed)")


def _strict_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        # The only way int() refuses a JSON integer literal: more digits than Python
        # converts (sys.set_int_max_str_digits, 4300 by default). Say so, not "not JSON".
        digits = len(text.lstrip("-"))
        limit = sys.get_int_max_str_digits()
        raise PayloadError(
            f"body holds an integer of {digits} digits; this server reads at most {limit}"
        ) from None


# Built once (json.loads with options builds a decoder per call). Objects become
# read-only mappings as the C scanner builds them, with no Python pass over the keys.
_DECODER = json.JSONDecoder(object_hook=MappingProxyType, parse_constant=_reject_constant)
# The same with a Python hook on every integer: used only to explain a body that the
# first one refused with int()'s own ValueError, so the usual path pays nothing for it.
_EXPLAINING_DECODER = json.JSONDecoder(
    object_hook=MappingProxyType, parse_constant=_reject_constant, parse_int=_strict_int
)


def _explain(text: str) -> None:
    """Raise the PayloadError naming the integer int() refused, if that was the cause."""
    try:
        _EXPLAINING_DECODER.decode(text)
    except PayloadError:
        raise
    except (ValueError, RecursionError):
        pass  # something else: the caller's generic reason stands


def load_json_object(body: bytes) -> Mapping[str, Any]:
    """Decode a body that must be a JSON object into a read-only mapping.

    Nested objects are read-only mappings too and arrays are tuples, so the
    result can be kept on a frozen :class:`~bounce_middleware.Bounce` as it is.
    Raises :class:`PayloadError` with a one-line reason.
    """
    if body[:3] == codecs.BOM_UTF8:
        body = body[3:]
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 encoded JSON") from None
    try:
        data = _DECODER.decode(text)
        # Bounce payloads rarely hold arrays, though "[" is common inside their strings
        # (SMTP diagnostics, Received headers): rebuild only when a list is really there.
        if b"[" in body and type(data) is MappingProxyType and _holds_list(data):
            data = _freeze_arrays(data)
        # JSON may escape a lone UTF-16 surrogate ("\ud800"), which no UTF-8 text can
        # hold: it would fail wherever the value is encoded again (a store, a log, an answer).
        if (b"\\ud" in body or b"\\uD" in body) and _holds_surrogate(data):
            raise PayloadError("body holds an unpaired UTF-16 surrogate escape")
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, PayloadError):
            raise
        if not isinstance(exc, json.JSONDecodeError):
            _explain(text)
        if not text.strip():
            raise PayloadError("body is empty; expected a JSON object") from None
        raise PayloadError("body is not valid JSON") from None
    if type(data) is not MappingProxyType:
        kind = json_type(data)
        shown = "JSON null" if kind == "null" else "a JSON " + kind
        raise PayloadError(f"body is {shown}; expected an object")
    frozen: Mapping[str, Any] = data
    return frozen


def _holds_surrogate(value: Any) -> bool:
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if type(value) is MappingProxyType:
        return any(_holds_surrogate(k) or _holds_surrogate(v) for k, v in value.items())
    if type(value) is tuple or type(value) is list:
        return any(_holds_surrogate(item) for item in value)
    return False


def _holds_list(mapping: Mapping[str, Any]) -> bool:
    for item in mapping.values():
        kind = type(item)
        if kind is list or (kind is MappingProxyType and _holds_list(item)):
            return True
    return False


def _freeze_arrays(value: Any) -> Any:
    if type(value) is list:
        return tuple(_freeze_arrays(item) for item in value)
    if type(value) is MappingProxyType:
        return MappingProxyType({key: _freeze_arrays(item) for key, item in value.items()})
    return value


def json_type(value: object) -> str:
    """The JSON name of a decoded (or frozen) value's type, for error messages."""
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
