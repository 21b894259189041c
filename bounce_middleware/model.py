"""The provider-neutral bounce event."""

from __future__ import annotations

import enum
import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any


class BounceKind(enum.StrEnum):
    """What happened to the message, in terms every provider can be mapped to."""

    HARD = "hard"
    SOFT = "soft"
    BLOCKED = "blocked"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    SUBSCRIBE = "subscribe"
    SUPPRESSED = "suppressed"
    AUTO_REPLY = "auto_reply"
    ERROR = "error"
    UNKNOWN = "unknown"


PERMANENT_KINDS = frozenset({BounceKind.HARD, BounceKind.COMPLAINT, BounceKind.SUPPRESSED})

EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})

#: An event id longer than this is digested in :attr:`Bounce.key`, so every key stays
#: under ~100 characters plus the provider name: short enough for any store's unique index.
MAX_KEY_ID_LENGTH = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounce:
    """One bounce (or complaint, suppression...) reported by a provider.

    The fields up to ``raw`` mean the same for every provider, or are empty
    where a provider does not send them: ``id`` is the provider's event id,
    ``type`` its raw event or bounce type, ``bounced_at`` when it happened
    (aware), ``description`` a short text, ``details`` the remote server's
    diagnostic, ``smtp_status`` the enhanced status code (``"5.1.1"``),
    ``tags`` and ``metadata`` what the sender attached. ``raw`` keeps this
    event's payload, read-only.

    Postmark-only, empty for every other provider: ``type_code``, ``name``,
    ``tag`` (also in ``tags``), ``message_stream``, ``server_id``,
    ``from_address``, ``subject``, ``inactive``, ``can_activate``,
    ``dump_available`` and ``content``.
    """

    provider: str
    id: str | None
    email: str
    kind: BounceKind
    type: str
    bounced_at: datetime | None = None
    message_id: str | None = None
    description: str = ""
    details: str = ""
    smtp_status: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAPPING)
    raw: Mapping[str, Any] = field(default_factory=lambda: EMPTY_MAPPING, repr=False, compare=False)
    #: What identifies the event when ``id`` alone does not (Mailgun ids repeat across
    #: days; one SES notification covers several recipients). :attr:`key` holds its
    #: digest, never the text: it may hold an address.
    dedup_id: str | None = field(default=None, repr=False)
    # Postmark only.
    type_code: int | None = None
    name: str = ""
    tag: str = ""
    message_stream: str | None = None
    server_id: int | None = None
    from_address: str = ""
    subject: str = ""
    inactive: bool = False
    can_activate: bool = True
    dump_available: bool = False
    content: str | None = field(default=None, repr=False)
    #: This event's bytes as received (or, for one event of a batch, on its own); the
    #: key of an event without an id is their digest, and ``replay`` parses them again.
    body: bytes = field(default=b"", repr=False, compare=False)

    @property
    def permanent(self) -> bool:
        """True when the address should be treated as undeliverable until fixed."""
        return self.kind in PERMANENT_KINDS

    @property
    def key(self) -> str:
        """The de-duplication key: provider and event id, or a digest.

        ``"postmark:4323372036"``. With a ``dedup_id`` (what identifies the event
        when the id alone does not: it may hold an address, and keys are logged)
        its digest follows the id: ``"mailgun:<id>:<24 hex digits>"``, or
        ``"mailgun:dedup-sha256:<hex>"`` without an id. An id over
        :data:`MAX_KEY_ID_LENGTH` characters becomes ``"postmark:id-sha256:<hex>"``,
        and an event without any id ``"postmark:sha256:<hex digest of the body>"``.
        Every key is short enough for a database's unique index, whatever the
        payload holds.
        """
        event_id = self.id
        if self.dedup_id is not None:
            digest = _sha256(self.dedup_id)
            if event_id is not None and len(event_id) <= MAX_KEY_ID_LENGTH:
                return f"{self.provider}:{event_id}:{digest[:24]}"
            return f"{self.provider}:dedup-sha256:{digest}"
        if event_id is not None:
            if len(event_id) <= MAX_KEY_ID_LENGTH:
                return f"{self.provider}:{event_id}"
            return f"{self.provider}:id-sha256:{_sha256(event_id)}"
        # Retries repeat the body byte for byte; a Bounce built by hand has only ``raw``.
        content = self.body or json.dumps(self.raw, sort_keys=True, default=_jsonable).encode()
        return f"{self.provider}:sha256:{hashlib.sha256(content).hexdigest()}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def fold_address(address: str) -> str:
    """An address as compared case-insensitively everywhere: NFKC, then Unicode case folding.

    ``lower()`` in SQL folds ASCII only on some databases (SQLite), so stores and
    user lookups compare folded values computed here, never the database's own.
    """
    return unicodedata.normalize("NFKC", address).casefold()
