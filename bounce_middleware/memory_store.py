"""MemoryStore: the store protocol in process memory, for tests and experiments."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from .model import Bounce, BounceKind
from .retention import StoreCounts
from .store import (
    Claim,
    ClaimState,
    Record,
    Settlement,
    address_key,
    aware,
    new_token,
    rejected_record,
    rejection_key,
    rejections_can_match,
    storable,
)

__all__ = ["MemoryStore"]


class _MemoryEvent:
    """MemoryStore's mutable bookkeeping for one event (a Record is built on demand)."""

    __slots__ = ("bounce", "received_at", "attempts", "completed", "finished", "lease")

    def __init__(self, bounce: Bounce) -> None:
        self.bounce = bounce
        self.received_at = datetime.now(UTC)
        self.attempts = 0
        self.completed: set[str] = set()
        self.finished = False
        self.lease: tuple[str, float] | None = None  # (token, monotonic expiry)

    def record(self) -> Record:
        bounce = self.bounce
        # As a database store keeps them, so that every store lists the same record.
        return Record(
            key=storable(bounce.key),
            provider=storable(bounce.provider),
            email=storable(bounce.email),
            kind=bounce.kind,
            type=storable(bounce.type),
            received_at=self.received_at,
            finished=self.finished,
            completed=frozenset(self.completed),
            body=bounce.body,
            attempts=self.attempts,
        )


class _MemoryRejection:
    """MemoryStore's record of a rejected request."""

    __slots__ = ("key", "provider", "body", "reason", "received_at", "resolved")

    def __init__(self, key: str, provider: str, body: bytes, reason: str) -> None:
        self.key = key
        self.provider = provider
        self.body = body
        self.reason = reason
        self.received_at = datetime.now(UTC)
        self.resolved = False

    def record(self) -> Record:
        return rejected_record(
            key=self.key,
            provider=self.provider,
            received_at=self.received_at,
            resolved=self.resolved,
            body=self.body,
            reason=self.reason,
        )


class MemoryStore:
    """A store in process memory, for tests and single-process experiments.

    Thread-safe; forgets everything when the process exits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, _MemoryEvent] = {}
        self._rejected: dict[str, _MemoryRejection] = {}

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        with self._lock:
            return self._claim(bounce, time.monotonic(), lease_seconds)

    def claim_many(self, bounces: Sequence[Bounce], *, lease_seconds: float) -> list[Claim]:
        """:meth:`claim` each of ``bounces`` at once: no other call sees half of the batch."""
        with self._lock:
            now = time.monotonic()
            return [self._claim(bounce, now, lease_seconds) for bounce in bounces]

    def _claim(self, bounce: Bounce, now: float, lease_seconds: float) -> Claim:
        # Called with the lock held.
        key = bounce.key
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = _MemoryEvent(bounce)
            state = ClaimState.NEW
        elif event.finished:
            return Claim(key, ClaimState.DONE, frozenset(event.completed))
        elif event.lease is not None and event.lease[1] > now:
            return Claim(key, ClaimState.BUSY, frozenset(event.completed))
        else:
            state = ClaimState.RESUMED
        token = new_token()
        event.lease = (token, now + lease_seconds)
        event.attempts += 1
        return Claim(key, state, frozenset(event.completed), token)

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim."""
        with self._lock:
            self._events[claim.key].completed.add(handler)
            if finished:
                self._release(claim, finished=True)

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        with self._lock:
            self._release(claim, finished=finished)

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Record each settlement's completed handlers and end its claim, all at once."""
        with self._lock:
            # Every event looked up first: an unknown key changes nothing, as a rollback would.
            events = [self._events[settlement.claim.key] for settlement in settlements]
            for event, settlement in zip(events, settlements, strict=True):
                event.completed.update(settlement.completed)
                self._release(settlement.claim, finished=settlement.finished)

    def _release(self, claim: Claim, *, finished: bool) -> None:
        # Called with the lock held.
        event = self._events[claim.key]
        if event.lease is not None and event.lease[0] == claim.token:
            event.lease = None
        if finished:
            event.finished = True

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        rejected: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events (or rejected records), newest first, optionally filtered."""
        folded = None if email is None else address_key(email)
        with self._lock:
            if rejected:
                found = [
                    r.record()
                    for r in reversed(self._rejected.values())
                    if rejections_can_match(kind, email) and not (unfinished and r.resolved)
                ]
            else:
                found = [
                    e.record()
                    for e in reversed(self._events.values())
                    if (kind is None or e.bounce.kind == kind)
                    and (folded is None or address_key(e.bounce.email) == folded)
                    and not (unfinished and e.finished)
                ]
        return found if limit is None else found[: max(limit, 0)]

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        """Keep an authenticated request refused with 400 (once per provider and body)."""
        key = rejection_key(provider, body)
        with self._lock:
            self._rejected.setdefault(
                key, _MemoryRejection(key, storable(provider), body, storable(reason))
            )
        return key

    def resolve(self, key: str) -> None:
        """Mark a rejected record replayed."""
        with self._lock:
            rejection = self._rejected.get(key)
            if rejection is not None:
                rejection.resolved = True

    def prune(self, before: datetime, *, limit: int) -> int:
        """Forget at most ``limit`` finished events received before ``before``, oldest first.

        A naive ``before`` is UTC, as on every store.
        """
        before = aware(before)
        with self._lock:
            doomed = [
                key
                for key, event in self._events.items()
                if event.finished and event.received_at < before
            ][: max(limit, 0)]
            for key in doomed:
                del self._events[key]
        return len(doomed)

    def counts(self, *, before: datetime | None = None) -> StoreCounts:
        """How many events, unfinished events and rejected requests the store holds."""
        before = None if before is None else aware(before)
        with self._lock:
            unfinished = [e.received_at for e in self._events.values() if not e.finished]
            return StoreCounts(
                events=len(self._events),
                unfinished=len(unfinished),
                rejected=len(self._rejected),
                rejected_unresolved=sum(not r.resolved for r in self._rejected.values()),
                oldest_unfinished=min(unfinished, default=None),
                prunable=0
                if before is None
                else sum(e.finished and e.received_at < before for e in self._events.values()),
            )

    def close(self) -> None:
        """Nothing to release; present so every shipped store can be closed alike."""
