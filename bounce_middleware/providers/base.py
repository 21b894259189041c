"""What every provider module implements, and the JSON reading they share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from bounce_middleware.errors import PayloadError
from bounce_middleware.model import Bounce

# Real webhook payloads nest two or three levels; anything deeper is not one.
MAX_DEPTH = 32


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


def load_json_object(body: bytes) -> dict[str, Any]:
    """Decode a body that must be a JSON object, with a one-line reason on failure."""
    if not body.strip():
        raise PayloadError("body is empty; expected a JSON object")
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 encoded JSON") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body is a JSON {json_type(data)}; expected an object")
    _check_depth(data)
    return data


def _check_depth(data: object) -> None:
    # Iterative, so a pathological body cannot exhaust the stack here either.
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PayloadError("body is nested too deeply")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
