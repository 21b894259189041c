"""Delivery of a batch: many events claimed in one transaction and settled in one.

SendGrid posts hundreds of events at once, an SES notification names several
recipients. Each event is claimed, run and completed on its own terms (the
same states as :func:`~bounce_middleware.delivery.deliver`), but the store is
written twice per batch, not twice per event. The answer is 200 only when
every event is done; 500 if a handler failed, 503 if an event was busy or the
store failed; a retried batch runs only what is not done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .answer import HANDLER_FAILED, Answer
from .errors import StoreUnavailable
from .handlers import FAILED, SUCCEEDED, Handler, run_handler
from .model import Bounce
from .scope import DeliveryScope
from .store import ClaimState, Settlement, Store
from .text import loggable

logger = logging.getLogger("bounce_middleware")


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
    """Claim every event of a batch at once, run the handlers each wants, settle them at once.

    Events with the same key are dispatched once. A handler's success is
    recorded when the batch is settled, so a crash before that runs it again
    on the redelivery (at least once); a transactional handler records its own
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
    settlements: list[Settlement] = []
    failed = busy_count = done = 0
    healthy = True  # False once the scope could not be renewed: the rest waits
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
        if not ok:
            failed += 1
        settlements.append(Settlement(claim, tuple(completed), ok))
    try:
        store.settle_many(settlements)
    except StoreUnavailable as exc:
        logger.error(
            "batch of %d events: could not record the outcomes (%s) -> 503",
            len(unique),
            loggable(exc),
        )
        return unavailable
    return _answer(len(unique), failed, busy_count, done, busy)


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
