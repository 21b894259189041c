"""Delivery of a batch: many events claimed in one transaction and settled in one.

SendGrid posts hundreds of events at once, an SES notification names several
recipients. Each event is claimed, run and completed on its own terms (the
same states as :func:`~bounce_middleware.delivery.deliver`), but the store is
written a few times per batch (claimed at once, outcomes recorded every
hundred events or second), not twice per event. The answer is 200 only when
every event is done; 500 if a handler failed, 503 if an event was busy or the
store failed; a retried batch runs only what is not done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from .answer import HANDLER_FAILED, Answer
from .errors import StoreUnavailable
from .handlers import COMPLETION_RETRY_DELAYS, FAILED, SUCCEEDED, Handler, run_handler
from .model import Bounce
from .scope import DeliveryScope
from .store import Claim, ClaimState, Settlement, Store
from .text import loggable

logger = logging.getLogger("bounce_middleware")


#: Outcomes are recorded at least every this many events, and at least this often:
#: a worker killed mid-batch (a server's timeout) keeps what it finished, so its
#: retry does not start from zero and die at the same place again.
SETTLE_EVERY_EVENTS = 100
SETTLE_EVERY_SECONDS = 1.0


def deliver_batch(
    events: Sequence[Bounce],
    handlers: Sequence[Handler],
    store: Store | None,
    scope: DeliveryScope,
    *,
    lease_seconds: float,
    unavailable: Answer,
    busy: Answer,
) -> Answer:
    """Claim every event of a batch at once, run the handlers each wants, settle them.

    Events with the same key are dispatched once. Outcomes are recorded every
    :data:`SETTLE_EVERY_EVENTS` events or :data:`SETTLE_EVERY_SECONDS`, and at
    the end: a handler whose success was not recorded yet runs again on the
    redelivery (at least once); a transactional handler records its own
    completion with its writes, as in a single delivery.
    """
    unique = list({event.key: event for event in reversed(events)}.values())
    unique.reverse()  # the first of each key, in the order received
    if store is None:
        return _run_without_store(unique, handlers, scope)
    try:
        claims = store.claim_many(unique, lease_seconds=lease_seconds)
    except StoreUnavailable as exc:
        logger.error(
            "batch of %d events: store unavailable (%s) -> 503", len(unique), loggable(exc)
        )
        return unavailable
    pending: list[Settlement] = []
    settled: set[str] = set()
    failed = busy_count = done = 0
    healthy = True  # False once the scope could not be renewed: the rest waits
    last_settled = time.monotonic()
    try:
        for event, claim in zip(unique, claims, strict=True):
            if claim.state is ClaimState.DONE:
                done += 1
                continue
            if claim.state is ClaimState.BUSY:
                busy_count += 1
                continue
            completed: list[str] = []
            ok = healthy
            if healthy:
                for handler in handlers:
                    if not handler.wants(event) or handler.name in claim.completed:
                        continue
                    outcome = run_handler(handler, event, store, claim, False)
                    if outcome == FAILED:
                        ok = False
                        if not scope.renew():
                            healthy = False
                            break
                    elif outcome == SUCCEEDED:
                        completed.append(handler.name)
                    # else RECORDED: a transactional handler recorded its own completion.
            failed += not ok
            pending.append(Settlement(claim, tuple(completed), ok))
            if (
                len(pending) >= SETTLE_EVERY_EVENTS
                or time.monotonic() - last_settled >= SETTLE_EVERY_SECONDS
            ):
                _settle(store, pending)
                settled.update(s.claim.key for s in pending)
                pending.clear()
                last_settled = time.monotonic()
        _settle(store, pending)
        pending.clear()
    except StoreUnavailable as exc:
        logger.error(
            "batch of %d events: could not record the outcomes (%s) -> 503",
            len(unique),
            loggable(exc),
        )
        _release_unsettled(store, claims, settled, pending)
        return unavailable
    except BaseException:
        # Killed mid-batch (a worker timeout's SystemExit): keep what finished.
        _settle_quietly(store, pending)
        raise
    return _answer(len(unique), failed, busy_count, done, busy)


def _settle(store: Store, settlements: list[Settlement]) -> None:
    """``store.settle_many``, retried briefly as a single completion is."""
    if not settlements:
        return
    for delay in COMPLETION_RETRY_DELAYS:
        try:
            store.settle_many(settlements)
            return
        except StoreUnavailable as exc:
            logger.warning(
                "batch: could not record %d outcomes (%s); retrying in %.1f s",
                len(settlements),
                loggable(exc),
                delay,
            )
        time.sleep(delay)
    store.settle_many(settlements)


def _release_unsettled(
    store: Store, claims: Sequence[Claim], settled: set[str], pending: Sequence[Settlement]
) -> None:
    # Best effort, as after a single delivery's store failure: record what is pending
    # and free the leases this delivery still holds, so that the provider's retry is
    # not answered "busy" until they expire.
    unsettled = settled | {s.claim.key for s in pending}
    rest = [Settlement(c, (), False) for c in claims if c.runs_handlers and c.key not in unsettled]
    try:
        store.settle_many([*pending, *rest])
    except StoreUnavailable as exc:
        logger.error(
            "batch: could not release %d claims: %s", len(pending) + len(rest), loggable(exc)
        )


def _settle_quietly(store: Store, settlements: list[Settlement]) -> None:
    try:
        if settlements:
            store.settle_many(settlements)
    except Exception as exc:
        logger.error("batch: could not record the outcomes on the way out: %s", type(exc).__name__)


def _run_without_store(
    events: list[Bounce], handlers: Sequence[Handler], scope: DeliveryScope
) -> Answer:
    failed = 0
    for event in events:
        ok = True
        for handler in handlers:
            if handler.wants(event) and run_handler(handler, event, None, None, False) == FAILED:
                ok = False
                if not scope.renew():
                    return _answer(len(events), failed + 1, 0, 0, HANDLER_FAILED)
        failed += not ok
    return _answer(len(events), failed, 0, 0, HANDLER_FAILED)


def _answer(total: int, failed: int, busy_count: int, done: int, busy: Answer) -> Answer:
    if failed:
        logger.error("batch of %d events: handlers failed for %d -> 500", total, failed)
        return HANDLER_FAILED
    if busy_count:
        logger.info(
            "batch of %d events: %d being processed by another delivery -> 503", total, busy_count
        )
        return busy
    logger.info("batch of %d events accepted (%d already processed) -> 200", total, done)
    return Answer(200, f"{total} events accepted")
