"""What every provider module implements, and the JSON reading they share."""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from bounce_middleware.auth import BasicCredentials
from bounce_middleware.errors import PayloadError
from bounce_middleware.model import Bounce
from bounce_middleware.request import WebhookRequest


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event of a batch that can never be accepted, kept alone as a rejected record.

    ``body`` is that event on its own, in a form ``parse`` reads again (so
    ``bounce-middleware replay`` can retry it after an upgrade); ``reason`` is
    one line, never quoting the body.
    """

    body: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a request holds: events to dispatch, records acknowledged, a handshake.

    ``events`` are dispatched (each claimed and completed on its own);
    ``acknowledged`` names the record types answered 200 but not dispatched
    (deliveries, opens, clicks); ``rejected`` are events of a batch refused one
    by one; ``handshake`` is the 200 answer's reason for a request that is a
    subscription confirmation or an empty ping.
    """

    events: tuple[Bounce, ...] = ()
    acknowledged: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    handshake: str = ""


#: The methods a provider uses when it says nothing else.
POST_ONLY: frozenset[str] = frozenset({"POST"})


__all__ = ["POST_ONLY", "BasicCredentials", "Parsed", "Provider", "Rejection", "load_json_object"]


@runtime_checkable
class Provider(Protocol):
    """One provider's webhook: how it authenticates, and what its bodies mean.

    ``name`` is the prefix of every event key (``"sendgrid"``); ``methods``
    are the methods it sends (others get 405); ``refuse_status`` answers a
    body that can never be accepted (400; Mailgun drops only on 406); and
    ``retry_status``, when set, replaces 500 and 503 for a provider that
    retries only on that status.

    Three optional methods: ``check_headers(request)`` runs the checks that
    need no body (HTTP Basic) before the front reads it, so an unauthenticated
    client never makes the server read a body (``request.body`` is empty
    there); ``answered(request, status)`` is told the status of every answer
    to an authenticated request (Mailgun forgets a replay token it did not
    accept); ``kept_body(request)`` returns the bytes to keep for a request
    that ``parse`` refused as a whole, when the body alone would not parse to
    the same keys later (Resend's event id is a header).
    """

    name: str
    methods: frozenset[str]
    refuse_status: int
    retry_status: int | None

    def authenticate(self, request: WebhookRequest) -> None:
        """Return quietly, or raise :class:`~bounce_middleware.errors.Unauthorized`."""
        ...

    def parse(self, request: WebhookRequest) -> Parsed:
        """The request's events; raise :class:`PayloadError` when it can never be accepted."""
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


#: The providers' JSON decoder: objects become read-only mappings as the C scanner
#: builds them (no Python pass over the keys); NaN and Infinity are refused. Built once:
#: json.loads with options builds a decoder per call.
JSON_DECODER = json.JSONDecoder(object_hook=MappingProxyType, parse_constant=_reject_constant)
# The same with a Python hook on every integer: used only to explain a body that the
# first one refused with int()'s own ValueError, so the usual path pays nothing for it.
_EXPLAINING_DECODER = json.JSONDecoder(
    object_hook=MappingProxyType, parse_constant=_reject_constant, parse_int=_strict_int
)


def explain_refused_integer(text: str) -> None:
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
        data = JSON_DECODER.decode(text)
        # Bounce payloads rarely hold arrays, though "[" is common inside their strings
        # (SMTP diagnostics, Received headers): rebuild only when a list is really there.
        if b"[" in body and type(data) is MappingProxyType and holds_list(data):
            data = freeze_arrays(data)
        # JSON may escape a lone UTF-16 surrogate ("\ud800"), which no UTF-8 text can
        # hold: it would fail wherever the value is encoded again (a store, a log, an answer).
        if (b"\\ud" in body or b"\\uD" in body) and holds_surrogate(data):
            raise PayloadError("body holds an unpaired UTF-16 surrogate escape")
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, PayloadError):
            raise
        if not isinstance(exc, json.JSONDecodeError):
            explain_refused_integer(text)
        if not text.strip():
            raise PayloadError("body is empty; expected a JSON object") from None
        raise PayloadError("body is not valid JSON") from None
    if type(data) is not MappingProxyType:
        kind = json_type(data)
        shown = "JSON null" if kind == "null" else "a JSON " + kind
        raise PayloadError(f"body is {shown}; expected an object")
    frozen: Mapping[str, Any] = data
    return frozen


def holds_surrogate(value: Any) -> bool:
    """Whether a decoded value holds a lone UTF-16 surrogate, which no UTF-8 text can."""
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if type(value) is MappingProxyType:
        return any(holds_surrogate(k) or holds_surrogate(v) for k, v in value.items())
    if type(value) is tuple or type(value) is list:
        return any(holds_surrogate(item) for item in value)
    return False


def holds_list(mapping: Mapping[str, Any]) -> bool:
    """Whether a decoded mapping holds a (mutable) list at any depth."""
    for item in mapping.values():
        kind = type(item)
        if kind is list or (kind is MappingProxyType and holds_list(item)):
            return True
    return False


def freeze_arrays(value: Any) -> Any:
    """A decoded value with every list made a tuple, so a frozen Bounce can keep it.

    A mapping holding no list at any depth is returned as it is, not copied.
    """
    kind = type(value)
    if kind is list:
        for item in value:
            if type(item) in _CONTAINERS:
                return tuple([freeze_arrays(i) if type(i) in _CONTAINERS else i for i in value])
        return tuple(value)  # scalars only (tags, addresses): copied in C
    if kind is MappingProxyType:
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if type(item) in _CONTAINERS:
                frozen = freeze_arrays(item)
                if frozen is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = frozen
        return value if changed is None else MappingProxyType(changed)
    return value


_CONTAINERS = (list, MappingProxyType)


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
