"""One delivery of a parsed event: claim, handlers, completions, and the answer.

Shared by every front (the WSGI middleware today): it knows nothing of HTTP
but the :class:`~bounce_middleware.answer.Answer` it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .answer import ACCEPTED, ALREADY_PROCESSED, HANDLER_FAILED, Answer
from .errors import StoreUnavailable
from .handlers import FAILED, SUCCEEDED, Handler, record_completion, run_handler
from .model import Bounce
from .scope import DeliveryScope
from .store import Claim, ClaimState, Store
from .text import loggable

logger = logging.getLogger("bounce_middleware")


def deliver(
    bounce: Bounce,
    handlers: Sequence[Handler],
    store: Store | None,
    scope: DeliveryScope,
    *,
    lease_seconds: float,
    unavailable: Answer,
    busy: Answer,
) -> Answer:
    """Claim ``bounce`` in ``store`` (if any), run the handlers it wants that have not
    completed it, record each completion, and answer.

    ``unavailable`` and ``busy`` are the 503 answers (they carry the configured
    ``Retry-After``). ``scope`` is renewed after a failed handler.
    """
    wanted = [h for h in handlers if h.wants(bounce)]
    if store is None:
        failed_names = []
        for handler in wanted:
            if run_handler(handler, bounce, None, None, False) == FAILED:
                failed_names.append(handler.name)
                if not scope.renew():
                    break
        return _answer(bounce, failed_names)
    try:
        claim = store.claim(bounce, lease_seconds=lease_seconds)
    except StoreUnavailable as exc:
        _log_store_failure(bounce.key, exc)
        return unavailable
    if claim.state is ClaimState.DONE:
        logger.info("bounce %s already processed -> 200", loggable(bounce.key))
        return ALREADY_PROCESSED
    if claim.state is ClaimState.BUSY:
        logger.info("bounce %s is being processed by another delivery -> 503", loggable(bounce.key))
        return busy
    pending = [h for h in wanted if h.name not in claim.completed]
    failed: list[str] = []
    try:
        for handler in pending:
            # The success that finishes the event also ends the claim, in one write.
            finishes = not failed and handler is pending[-1]
            outcome = run_handler(handler, bounce, store, claim, finishes)
            if outcome == FAILED:
                failed.append(handler.name)
                if not scope.renew():
                    break  # the rest waits for the redelivery, in a sound scope
            elif outcome == SUCCEEDED:
                record_completion(store, claim, handler.name, finished=finishes)
            # else RECORDED: a transactional handler recorded its own completion.
        if failed or not pending:
            store.release(claim, finished=not failed)
    except StoreUnavailable as exc:
        _log_store_failure(bounce.key, exc)
        _release_unfinished(store, claim)
        return unavailable
    return _answer(bounce, failed)


def _release_unfinished(store: Store, claim: Claim) -> None:
    # Best effort after a store failure: otherwise the lease simply expires.
    try:
        store.release(claim, finished=False)
    except StoreUnavailable as exc:
        logger.error(
            "bounce %s: could not release its claim: %s", loggable(claim.key), loggable(exc)
        )


def _answer(bounce: Bounce, failed: list[str]) -> Answer:
    if failed:
        logger.error(
            "bounce %s type=%s kind=%s: %d handler(s) failed -> 500",
            loggable(bounce.key),
            loggable(bounce.type),
            bounce.kind.value,
            len(failed),
        )
        return HANDLER_FAILED
    if logger.isEnabledFor(logging.INFO):  # skips escaping when nobody listens
        logger.info(
            "bounce %s type=%s kind=%s accepted -> 200",
            loggable(bounce.key),
            loggable(bounce.type),
            bounce.kind.value,
        )
    return ACCEPTED


def _log_store_failure(key: str, exc: StoreUnavailable) -> None:
    # The store's own message, without the traceback: a database driver's chained
    # error may quote the statement's parameters (addresses, the body).
    logger.error("bounce %s: store unavailable (%s) -> 503", loggable(key), loggable(exc))
