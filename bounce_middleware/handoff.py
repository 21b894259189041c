"""Handlers in a task queue: the webhook records and queues, a worker runs the handlers.

With ``handoff=`` the request path claims each event in the store (recording
it, with its body, as any delivery does), releases it unfinished, gives its
key to the queue and answers 200 at once. A queue worker runs
:func:`run_queued` for the key: the event is read back from the store, parsed
again by its route's provider, and delivered exactly as in a request (claim
with a lease, the handlers not yet completed, each completion recorded). The
store is the source of truth; the queue holds only keys. A message the broker
loses, or a worker that dies, leaves an unfinished event that :func:`sweep`
queues again. Framework-free: the Celery glue is in :mod:`.celery_tasks`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .answer import ALREADY_PROCESSED, Answer
from .errors import StoreUnavailable
from .model import Bounce
from .reparse import NotReplayable, stored_event
from .scope import DeliveryScope
from .store import Claim, ClaimState, Record, Settlement, Store
from .text import loggable

if TYPE_CHECKING:
    from .receiver import Receiver

logger = logging.getLogger("bounce_middleware")

QUEUED = Answer(200, "accepted; queued for the handlers")
#: Recorded, but the broker did not take the key: the sweeper queues it later.
KEPT = Answer(200, "accepted; recorded, to be queued later")
BEING_PROCESSED = Answer(200, "accepted; being processed")


@runtime_checkable
class Handoff(Protocol):
    """Where the webhook hands event keys to be delivered by a worker (Celery's is
    :class:`~bounce_middleware.celery_tasks.CeleryHandoff`)."""

    def bind(self, receiver: Receiver) -> None:
        """Called by the receiver built with this handoff: the one whose store,
        routes and handlers the worker of this process uses."""
        ...

    def enqueue(self, keys: Sequence[str]) -> None:
        """Queue each key for :func:`run_queued`; raise when the broker cannot take them."""
        ...


class Outcome(enum.Enum):
    """What a worker's :func:`run_queued` came to, and so what the task does next."""

    DONE = "done"  #: finished (now or before), or nothing is stored under the key
    FAILED = "failed"  #: a handler failed: retry later, with backoff
    BUSY = "busy"  #: another delivery holds the event's lease: retry later
    UNAVAILABLE = "unavailable"  #: the store failed: retry later
    SKIPPED = "skipped"  #: the stored body no longer parses: logged, left for ``replay``

    @property
    def retry(self) -> bool:
        """True when a later try may finish the event."""
        return self in (Outcome.FAILED, Outcome.BUSY, Outcome.UNAVAILABLE)


def hand_off(receiver: Receiver, events: Sequence[Bounce]) -> Answer:
    """Record ``events`` as queued (claimed, then released unfinished), queue their keys,
    and answer: 200 once recorded, whether or not the broker took the keys; 503 when
    the store could not record them.
    """
    store = receiver.store
    handoff = receiver.handoff
    assert store is not None and handoff is not None  # the receiver checked both
    unique = list({event.key: event for event in reversed(events)}.values())
    unique.reverse()
    label = unique[0].key if len(unique) == 1 else f"batch of {len(unique)}"
    # How the log names it: "bounce <key>" or "batch of <n>", escaped.
    shown = f"bounce {loggable(label)}" if len(unique) == 1 else label
    queued: list[str] = []
    done = busy = 0
    scope = DeliveryScope(receiver.scope, label)
    try:
        if not scope.enter():
            raise StoreUnavailable("the delivery scope could not be entered")
        claims = (
            [store.claim(unique[0], lease_seconds=receiver.lease_seconds)]
            if len(unique) == 1
            else store.claim_many(unique, lease_seconds=receiver.lease_seconds)
        )
        settlements: list[Settlement] = []
        for event, claim in zip(unique, claims, strict=True):
            if claim.state is ClaimState.DONE:
                done += 1
            elif claim.state is ClaimState.BUSY:
                busy += 1  # recorded; its holder finishes it, or leaves it to the sweeper
            else:
                pending = _pending(receiver, event, claim)
                settlements.append(Settlement(claim, (), not pending))
                if pending:
                    queued.append(event.key)
        _settle(store, settlements, shown)
    except StoreUnavailable as exc:
        logger.error("%s: store unavailable (%s) -> 503", shown, loggable(exc))
        return receiver.unavailable_answer
    finally:
        scope.close()
    sent = _enqueue(handoff, queued, shown)
    if len(unique) > 1:
        logger.info(
            "batch of %d events recorded: %d %s, %d already processed -> 200",
            len(unique),
            len(queued),
            "queued" if sent else "kept for the sweeper",
            done,
        )
        return Answer(
            200, f"{len(unique)} events accepted; {len(queued)} {'queued' if sent else 'kept'}"
        )
    event = unique[0]
    if done:
        logger.info("bounce %s already processed -> 200", loggable(event.key))
        return ALREADY_PROCESSED
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "bounce %s type=%s kind=%s %s -> 200",
            loggable(event.key),
            loggable(event.type),
            event.kind.value,
            "being processed"
            if busy
            else ("wanted by no handler" if not queued else "queued" if sent else "kept"),
        )
    if busy:
        return BEING_PROCESSED
    return QUEUED if sent else KEPT


def _pending(receiver: Receiver, event: Bounce, claim: Claim) -> bool:
    return any(h.wants(event) and h.name not in claim.completed for h in receiver.handlers)


def _settle(store: Store, settlements: list[Settlement], shown: str) -> None:
    # Releasing unfinished frees the lease for the worker at once. Should it fail, the
    # events are recorded all the same: the worker finds them busy until the lease ends.
    try:
        if len(settlements) == 1:
            settlement = settlements[0]
            store.release(settlement.claim, finished=settlement.finished)
        elif settlements:
            store.settle_many(settlements)
    except StoreUnavailable as exc:
        logger.warning(
            "%s: recorded, but its claim was not released (%s); a worker takes it "
            "when the lease ends",
            shown,
            loggable(exc),
        )


def _enqueue(handoff: Handoff, keys: list[str], shown: str) -> bool:
    """Queue ``keys``; False (logged) when the broker did not take them."""
    if not keys:
        return True
    try:
        handoff.enqueue(keys)
    except Exception as exc:
        # Only the class: a broker's message may quote its URL, password included.
        logger.error(
            "%s: recorded, but the queue did not take %d key(s) (%s); the sweeper "
            "queues them again",
            shown,
            len(keys),
            type(exc).__name__,
        )
        return False
    return True


def find_record(store: Store, key: str) -> Record | None:
    """The stored event ``key``, or None; finished events only from a store with ``record``.

    A store may offer ``record(key) -> Record | None`` (one indexed read);
    otherwise the unfinished events are searched, which is all a worker needs.
    """
    lookup: Callable[[str], Record | None] | None = getattr(store, "record", None)
    if callable(lookup):
        return lookup(key)
    return next((r for r in store.records(unfinished=True, limit=None) if r.key == key), None)


def run_queued(receiver: Receiver, key: str) -> Outcome:
    """Deliver the queued event ``key``: its pending handlers, as a request would run them.

    The event is read from the store and its body parsed again by its route's
    provider (:func:`~bounce_middleware.reparse.stored_event`); the delivery
    claims it with a lease, so two workers never run it at once.
    """
    store = receiver.store
    if store is None:
        raise StoreUnavailable("a queued event needs the store it was recorded in")
    try:
        record = find_record(store, key)
    except StoreUnavailable as exc:
        logger.error("queued bounce %s: store unavailable (%s)", loggable(key), loggable(exc))
        return Outcome.UNAVAILABLE
    if record is None or record.finished:
        logger.info("queued bounce %s: already finished", loggable(key))
        return Outcome.DONE
    try:
        event = stored_event(receiver.routes, record)
    except NotReplayable as exc:
        logger.error(
            "queued bounce %s cannot run: %s; left unfinished for bounce-middleware replay",
            loggable(key),
            loggable(exc.reason),
        )
        return Outcome.SKIPPED
    answer = receiver.deliver(event)
    if answer.status == 200:
        return Outcome.DONE
    if answer is receiver.busy_answer:
        return Outcome.BUSY
    return Outcome.FAILED if answer.status == 500 else Outcome.UNAVAILABLE


def sweep(
    store: Store,
    enqueue: Callable[[Sequence[str]], None],
    older_than: timedelta,
    *,
    now: datetime | None = None,
) -> int:
    """Queue again every unfinished event first received longer than ``older_than`` ago;
    return how many. Oldest first. What the broker raises propagates.

    A queued event stays unfinished until a worker finishes it: one older than
    the threshold lost its message (a broker restart, a worker killed with it)
    or failed every retry. A second message for an event a worker is running
    costs a ``busy`` retry, nothing more: the store's lease decides who runs it.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    keys = [
        record.key
        for record in reversed(store.records(unfinished=True, limit=None))
        if record.received_at <= cutoff
    ]
    if keys:
        enqueue(keys)
        logger.warning("sweeper: %d unfinished event(s) queued again", len(keys))
    return len(keys)
