"""A bounded, thread-safe memory of signed tokens already accepted (replay protection).

Mailgun signs a timestamp and a random token but not the body, so a captured
request can be sent again unchanged, and its signature still verifies until
the timestamp leaves the window. Remembering each accepted token until then
refuses such a replay.

Limits, by design:

- **One process.** Each worker has its own memory; a replay sent to another
  worker, or after a restart, is not refused here. The store's de-duplication
  by event key is what guarantees an event is applied once; this memory only
  turns a replay into a 401 earlier and more cheaply.
- **Bounded.** At most ``max_entries`` tokens; past that the oldest are
  forgotten first and lose their protection (one entry costs about 200 bytes,
  so the default 100,000 is about 20 MB at worst). Only tokens whose signature
  verified are recorded, so nobody without the signing key can fill it.
- **Retries.** A provider that resends the same signed token when a delivery
  failed (Mailgun is reported to) must get it accepted again: call
  :meth:`SeenTokens.forget` when the answer is not a success, or every retry
  after a 5xx would be refused and the event lost.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from bounce_middleware.errors import ConfigurationError

from .common import SignatureError

#: Default capacity (see the module docstring for the memory it costs).
DEFAULT_MAX_ENTRIES = 100_000


class SeenTokens:
    """Tokens accepted within the last ``window`` seconds of their signed timestamp.

    ``window`` must be the timestamp window of the check that uses it: a token
    is remembered exactly as long as its timestamp would still be accepted,
    after which the window check refuses a replay on its own.
    """

    def __init__(self, *, window: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if not window > 0:
            raise ConfigurationError("the replay window must be a positive number of seconds")
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1")
        self.window = window
        self.max_entries = max_entries
        # token -> the time after which its timestamp is stale anyway. Insertion
        # order is roughly expiry order, so expired entries are found at the front.
        self._expiries: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, token: str, *, timestamp: float, now: float | None = None) -> None:
        """Record ``token`` (signed with ``timestamp``), or raise :class:`SignatureError`
        if it was already accepted and its timestamp is still within the window.

        Check and record happen under one lock, so of two concurrent requests
        carrying the same token exactly one is accepted.
        """
        current = time.time() if now is None else now
        with self._lock:
            expiry = self._expiries.get(token)
            if expiry is not None and expiry > current:
                raise SignatureError("token already used (a replayed request)")
            self._expiries.pop(token, None)
            self._purge(current)
            while len(self._expiries) >= self.max_entries:
                self._expiries.popitem(last=False)  # the oldest loses its protection first
            self._expiries[token] = timestamp + self.window

    def forget(self, token: str) -> None:
        """Accept ``token`` again: its delivery did not succeed and the provider will retry it."""
        with self._lock:
            self._expiries.pop(token, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiries)

    def _purge(self, now: float) -> None:
        # Front entries only: an entry behind a live one waits its turn (bounded by
        # max_entries), which keeps each call O(expired) instead of O(size).
        while self._expiries:
            token, expiry = next(iter(self._expiries.items()))
            if expiry > now:
                return
            del self._expiries[token]
