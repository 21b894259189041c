"""Refused requests: the 401s, the 503 of a temporary failure, and rejected records kept.

Nothing authenticated is dropped: a body the parser refuses (and a request
authentic but not authorised) is kept by the store as a rejected record, or
answered 503 when the store cannot keep it. :class:`Refusals` holds these
answers for :class:`~bounce_middleware.receiver.Receiver`.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from .answer import Answer
from .errors import StoreUnavailable, TemporaryFailure, Unauthorized
from .providers.base import Provider, Rejection
from .request import WebhookRequest
from .scope import DeliveryScope
from .store import Store
from .text import loggable

logger = logging.getLogger("bounce_middleware")

NOT_AUTHENTICATED = Answer(401, "not authenticated")
_UNEXPECTED = Answer(500, "an unexpected error occurred; retry later")


class Refusals:
    """The receiver's answers to what it refuses (a mixin: the receiver has the state)."""

    __slots__ = ()

    store: Store | None
    scope: Callable[[], AbstractContextManager[object]] | None
    _unavailable: Answer
    _retry: tuple[tuple[str, str], ...]
    _unauthorized: dict[str | None, Answer]

    def _with_retry_status(
        self,
        provider: Provider,
        request: WebhookRequest,
        answer_it: Callable[[Provider, WebhookRequest], Answer],
    ) -> Answer:
        """``answer_it``'s answer, its 5xx (and any exception) as the provider's retry status.

        For a provider that retries only on one status and drops an event on any 5xx
        (Brevo: 429), a bug must not become the server's 500 either.
        """
        retry_status = provider.retry_status
        assert retry_status is not None
        try:
            answer = answer_it(provider, request)
        except Exception as exc:
            # Where it happened, not the message: the message may quote the body.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            logger.error(
                "%s webhook: unexpected %s at %s:%d -> %d",
                provider.name,
                type(exc).__name__,
                where.filename,
                where.lineno or 0,
                retry_status,
            )
            answer = _UNEXPECTED
        if answer.status < 500:
            return answer
        logger.info(
            "%s retries only %d: answered it instead of %d",
            provider.name,
            retry_status,
            answer.status,
        )
        headers = answer.headers
        if not any(name == "Retry-After" for name, _ in headers):
            # A handler's failure has no Retry-After of its own: say when to come back.
            headers = (*headers, *self._retry)
        return Answer(retry_status, answer.reason, headers)

    def _unauthenticated(
        self, provider: Provider, request: WebhookRequest, exc: Unauthorized
    ) -> Answer:
        if exc.keep:
            # Authentic but not authorised (an SNS topic nobody configured): the provider
            # counts a 4xx as delivered and never sends it again, so keep it.
            logger.error(
                "%s webhook refused: %s -> 401; configure it to accept these",
                provider.name,
                loggable(exc.reason),
            )
            kept = self._keep(provider, request.body, exc.reason, 401)
            if kept is not None:
                return kept
        else:
            logger.warning("%s webhook refused: %s -> 401", provider.name, loggable(exc.reason))
        answer = self._unauthorized.get(exc.challenge)
        if answer is None:
            answer = Answer(
                401, "authentication required", (("WWW-Authenticate", exc.challenge or ""),)
            )
            self._unauthorized[exc.challenge] = answer
        return answer

    def _retry_later(self, provider: Provider, exc: TemporaryFailure) -> Answer:
        logger.error("%s webhook: %s -> 503", provider.name, loggable(exc.reason))
        return Answer(503, "temporarily unable to process this request; retry later", self._retry)

    def _refuse(self, provider: Provider, body: bytes, reason: str) -> Answer:
        """Answer an authenticated body the parser refused, keeping it in the store.

        Nothing authenticated is dropped: the store keeps the body and reason as
        a rejected record (``bounce-middleware list --rejected``, ``replay``). If
        the store cannot, the answer is 503 so that the provider retries.
        Without a store one ERROR line says what was lost, and why.
        """
        failure = self._keep(provider, body, reason, provider.refuse_status)
        return failure if failure is not None else Answer(provider.refuse_status, reason)

    def _keep_rejections(self, provider: Provider, rejected: Sequence[Rejection]) -> Answer | None:
        for rejection in rejected:
            failure = self._keep(provider, rejection.body, rejection.reason, 200)
            if failure is not None:
                return failure
        return None

    def _keep(self, provider: Provider, body: bytes, reason: str, status: int) -> Answer | None:
        """Keep a refused body as a rejected record; the 503 to answer if the store cannot."""
        store = self.store
        shown = loggable(reason)
        if store is None:
            logger.error(
                "authenticated %s webhook refused and not kept (no store configured): %s -> %d",
                provider.name,
                shown,
                status,
            )
            return None
        scope = DeliveryScope(self.scope, f"{provider.name}:rejected")
        try:
            if not scope.enter():
                raise StoreUnavailable("the delivery scope could not be entered")
            key = store.reject(provider.name, body, reason)
        except StoreUnavailable as exc:
            logger.error(
                "authenticated %s webhook refused (%s) and the store could not keep it (%s) -> 503",
                provider.name,
                shown,
                loggable(exc),
            )
            return self._unavailable
        finally:
            scope.close()
        logger.warning(
            "%s webhook refused: %s -> %d; kept as rejected record %s",
            provider.name,
            shown,
            status,
            loggable(key),
        )
        return None
