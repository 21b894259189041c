"""Delivery guarantees of the middleware over a store (issues 10 and 11).

- Nothing authenticated is dropped: a body the parser refuses is kept as a
  rejected record, or answered 503 when the store cannot keep it.
- A completion write that fails after its handler succeeded is retried briefly.
- Transactional handlers record their own completion; the middleware then
  writes nothing more for them.

The stores here are real :class:`MemoryStore` subclasses that inject faults,
not mocks: every call they do not fail runs the real store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from webtest import TestApp

from bounce_middleware import (
    Bounce,
    BounceMiddleware,
    Claim,
    ConfigurationError,
    Delivery,
    MemoryStore,
    StoreUnavailable,
)
from bounce_middleware.store import rejection_key
from bounce_middleware.testing import auth_headers, postmark_bounce

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "a-long-test-password-0123"
AUTH = auth_headers(USER, PASSWORD)


def downstream(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("204 No Content", [])
    return [b""]


class FaultyStore(MemoryStore):
    """A MemoryStore whose ``complete`` fails the first ``complete_failures`` calls,
    and whose ``reject`` fails while ``reject_fails`` is set."""

    def __init__(self, complete_failures: int = 0, reject_fails: bool = False) -> None:
        super().__init__()
        self.complete_failures = complete_failures
        self.reject_fails = reject_fails
        self.complete_calls: list[tuple[str, bool]] = []

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        self.complete_calls.append((handler, finished))
        if self.complete_failures > 0:
            self.complete_failures -= 1
            raise StoreUnavailable("complete: disk I/O error (injected)")
        super().complete(claim, handler, finished=finished)

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        if self.reject_fails:
            raise StoreUnavailable("reject: database is locked (injected)")
        return super().reject(provider, body, reason)


class Counter:
    """An ordinary handler counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, bounce: Bounce) -> None:
        self.calls += 1


def make_app(store: MemoryStore | None, *handlers: Any, **options: Any) -> TestApp[Any]:
    middleware = BounceMiddleware(
        downstream,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=handlers,
        store=store,
        **options,
    )
    return TestApp(middleware, lint=True)


def post(app: TestApp[Any], body: bytes | dict[str, Any], **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return app.request(
        PATH,
        method="POST",
        body=raw,
        headers={**AUTH, "Content-Type": "application/json", **headers},
        expect_errors=True,
    )


# --- nothing authenticated is dropped ----------------------------------------------------

REFUSED = json.dumps(postmark_bounce(ID="not-a-number", email="kept@example.com")).encode()
REASON = "field ID must be an integer, not a string"


def test_a_refused_body_is_kept_as_a_rejected_record(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    counter = Counter()
    app = make_app(store, counter)
    with caplog.at_level(logging.DEBUG, logger="bounce_middleware"):
        response = post(app, REFUSED)
    assert (response.status_int, response.text) == (400, REASON + "\n")
    [record] = store.records(rejected=True)
    assert record.key == rejection_key("postmark", REFUSED)
    assert (record.body, record.reason, record.provider) == (REFUSED, REASON, "postmark")
    assert record.rejected and not record.finished
    assert store.records() == []  # not an accepted event
    assert counter.calls == 0
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert record.key in line and REASON in line
    assert "kept@example.com" not in line


def test_a_redelivered_refused_body_is_kept_once() -> None:
    store = MemoryStore()
    app = make_app(store)
    assert post(app, REFUSED).status_int == 400
    assert post(app, REFUSED).status_int == 400
    assert len(store.records(rejected=True)) == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"ID": ' + b"1" * 5000 + b"}", b"{}", b'{"Type": "HardBounce"}'],
    ids=["not-json", "array", "huge-integer", "empty-object", "no-id"],
)
def test_every_parser_refusal_is_kept(body: bytes) -> None:
    store = MemoryStore()
    response = post(make_app(store), body)
    assert response.status_int == 400
    [record] = store.records(rejected=True)
    assert record.body == body
    assert record.reason + "\n" == response.text


def test_unauthenticated_bodies_are_never_kept() -> None:
    store = MemoryStore()
    response = post(make_app(store), REFUSED, Authorization="Basic bm86bm8=")
    assert response.status_int == 401
    assert store.records(rejected=True) == []


def test_a_store_that_cannot_keep_a_refused_body_gets_a_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore(reject_fails=True)
    app = make_app(store, retry_after=17)
    with caplog.at_level(logging.DEBUG, logger="bounce_middleware"):
        response = post(app, REFUSED)
    assert response.status_int == 503
    assert response.headers["Retry-After"] == "17"
    assert any(
        r.levelno == logging.ERROR and "could not keep it" in r.getMessage() for r in caplog.records
    )
    store.reject_fails = False  # the store is back: Postmark's retry is kept
    assert post(app, REFUSED).status_int == 400
    assert len(store.records(rejected=True)) == 1


def test_rejection_runs_inside_the_scope() -> None:
    events: list[str] = []

    @contextmanager
    def scope() -> Iterator[None]:
        events.append("enter")
        yield
        events.append("exit")

    store = MemoryStore()
    assert post(make_app(store, scope=scope), REFUSED).status_int == 400
    assert events == ["enter", "exit"]


# --- a failed completion write is retried -----------------------------------------------


@pytest.mark.parametrize("failures", [1, 2])
def test_a_completion_write_that_fails_briefly_is_retried(
    failures: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = FaultyStore(complete_failures=failures)
    counter = Counter()
    app = make_app(store, counter)
    body = postmark_bounce(ID=501)
    with caplog.at_level(logging.WARNING, logger="bounce_middleware"):
        assert post(app, body).status_int == 200
    assert counter.calls == 1
    assert len(store.complete_calls) == failures + 1
    [record] = store.records()
    assert record.finished
    assert record.completed == {"tests.test_dispatch.Counter"}
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == failures
    # The redelivery finds the event finished: the handler does not run again.
    assert post(app, body).text == "already processed\n"
    assert counter.calls == 1


def test_a_completion_write_that_keeps_failing_is_a_503_and_the_handler_reruns() -> None:
    store = FaultyStore(complete_failures=3)
    counter = Counter()
    app = make_app(store, counter, retry_after=5)
    body = postmark_bounce(ID=502)
    response = post(app, body)
    assert response.status_int == 503
    assert response.headers["Retry-After"] == "5"
    assert len(store.complete_calls) == 3  # bounded: three tries, then the answer
    [record] = store.records()
    assert not record.finished and record.completed == frozenset()
    # At least once: the redelivery runs the handler again, and this time it is recorded.
    assert post(app, body).status_int == 200
    assert counter.calls == 2
    assert store.records()[0].finished


# --- transactional handlers --------------------------------------------------------------


class TransactionalHandler:
    """Records its own completion, as a database handler does inside its transaction."""

    transactional = True

    def __init__(self, record_itself: bool = True) -> None:
        self.record_itself = record_itself
        self.deliveries: list[Delivery] = []

    def __call__(self, bounce: Bounce, delivery: Delivery) -> bool:
        self.deliveries.append(delivery)
        if not self.record_itself or delivery.store is None:
            return False
        # "Inside the transaction": the handler's own writes would commit with this.
        delivery.store.complete(delivery.claim, delivery.name, finished=delivery.finishes)
        return True


def test_a_transactional_handler_records_its_own_completion_once() -> None:
    store = FaultyStore()
    handler = TransactionalHandler()
    app = make_app(store, handler)
    body = postmark_bounce(ID=601)
    assert post(app, body).status_int == 200
    [delivery] = handler.deliveries
    assert delivery.name == "tests.test_dispatch.TransactionalHandler"
    assert delivery.finishes is True
    assert delivery.store is store
    assert delivery.claim.key == "postmark:601"
    # Only the handler's own write: the middleware did not complete it a second time.
    assert store.complete_calls == [(delivery.name, True)]
    [record] = store.records()
    assert record.finished and record.completed == {delivery.name}
    assert post(app, body).text == "already processed\n"
    assert len(handler.deliveries) == 1


def test_transactional_and_ordinary_handlers_together() -> None:
    store = FaultyStore()
    first, last = TransactionalHandler(), Counter()
    app = make_app(store, first, last)
    assert post(app, postmark_bounce(ID=602)).status_int == 200
    [delivery] = first.deliveries
    assert delivery.finishes is False  # another handler comes after it
    assert store.complete_calls == [
        ("tests.test_dispatch.TransactionalHandler", False),
        ("tests.test_dispatch.Counter", True),
    ]
    assert store.records()[0].finished


def test_a_transactional_handler_returning_false_is_completed_by_the_middleware() -> None:
    store = FaultyStore()
    handler = TransactionalHandler(record_itself=False)
    assert post(make_app(store, handler), postmark_bounce(ID=603)).status_int == 200
    assert store.complete_calls == [("tests.test_dispatch.TransactionalHandler", True)]
    assert store.records()[0].finished


def test_a_transactional_handler_after_a_failure_does_not_finish_the_event() -> None:
    def broken(bounce: Bounce) -> None:
        raise RuntimeError("fails")

    store = FaultyStore()
    handler = TransactionalHandler()
    assert post(make_app(store, broken, handler), postmark_bounce(ID=604)).status_int == 500
    [delivery] = handler.deliveries
    assert delivery.finishes is False
    [record] = store.records()
    assert not record.finished and record.completed == {delivery.name}


def test_a_transactional_handler_without_a_store() -> None:
    handler = TransactionalHandler()
    assert post(make_app(None, handler), postmark_bounce(ID=605)).status_int == 200
    [delivery] = handler.deliveries
    assert delivery.store is None
    assert delivery.claim.key == "postmark:605"


def test_only_a_literal_true_marks_a_handler_transactional() -> None:
    seen: list[int] = []

    def handler(bounce: Bounce) -> None:
        seen.append(1)

    handler.transactional = "yes"  # type: ignore[attr-defined]
    middleware = BounceMiddleware(
        downstream, path=PATH, credentials=[f"{USER}:{PASSWORD}"], handlers=[handler]
    )
    assert middleware.handlers[0].transactional is False
    assert post(TestApp(middleware), postmark_bounce()).status_int == 200
    assert seen == [1]
    assert (
        BounceMiddleware(
            downstream,
            path=PATH,
            credentials=[f"{USER}:{PASSWORD}"],
            handlers=[TransactionalHandler()],
        )
        .handlers[0]
        .transactional
    )


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "store"])
def test_a_failed_handlers_scope_is_left_before_anything_else_runs(with_store: bool) -> None:
    contexts: list[list[str]] = []

    @contextmanager
    def scope() -> Iterator[None]:
        context: list[str] = []
        contexts.append(context)
        yield
        context.append("exit")

    def first(bounce: Bounce) -> None:
        contexts[-1].append("first")
        raise RuntimeError("leaves its context dirty")

    def second(bounce: Bounce) -> None:
        contexts[-1].append("second")

    class ScopedStore(MemoryStore):
        def release(self, claim: Claim, *, finished: bool) -> None:
            contexts[-1].append("release")
            super().release(claim, finished=finished)

    store = ScopedStore() if with_store else None
    middleware = BounceMiddleware(
        downstream,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[first, second],
        store=store,
        scope=scope,
    )
    assert post(TestApp(middleware), postmark_bounce()).status_int == 500
    after = ["second", "release", "exit"] if with_store else ["second", "exit"]
    assert contexts == [["first", "exit"], after]


class BrokenScope:
    """A scope factory that fails on entering or leaving, as told; counts entries."""

    def __init__(self) -> None:
        self.fail_enter = False
        self.fail_exit = False
        self.entered = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if self.fail_enter:
            raise RuntimeError("cannot enter: SECRET-SCOPE-DETAIL ann@example.com")
        self.entered += 1
        yield
        if self.fail_exit:
            raise RuntimeError("cannot leave: SECRET-SCOPE-DETAIL ann@example.com")


def test_a_scope_failing_to_renew_stops_the_delivery_and_frees_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def first(bounce: Bounce) -> None:
        if not ran:
            ran.append("first failed")
            raise RuntimeError("first delivery fails")
        ran.append("first")

    def second(bounce: Bounce) -> None:
        ran.append("second")

    scope = BrokenScope()
    scope.fail_exit = True
    store = MemoryStore()
    app = make_app(store, first, second, scope=scope)
    payload = postmark_bounce()
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        assert post(app, payload).status_int == 500
    # The dirty scope could not be left: nothing else ran in it, and the claim was freed.
    assert ran == ["first failed"]
    assert "the delivery scope failed on leaving (RuntimeError)" in caplog.text
    assert "SECRET-SCOPE-DETAIL" not in caplog.text and "ann@example.com" not in caplog.text
    scope.fail_exit = False
    assert post(app, payload).status_int == 200  # not 503: the lease was released
    assert ran == ["first failed", "first", "second"]


def test_a_scope_failing_on_its_final_exit_keeps_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = BrokenScope()
    scope.fail_exit = True
    store = MemoryStore()
    app = make_app(store, lambda bounce: None, scope=scope)
    with caplog.at_level(logging.ERROR, logger="bounce_middleware"):
        assert post(app, postmark_bounce()).status_int == 200
    assert "the delivery scope failed on leaving (RuntimeError)" in caplog.text
    [record] = store.records()
    assert record.finished


def test_a_scope_that_cannot_be_entered_is_a_retry_and_claims_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = BrokenScope()
    scope.fail_enter = True
    store = MemoryStore()
    ran: list[Bounce] = []
    app = make_app(store, ran.append, scope=scope)
    with caplog.at_level(logging.ERROR, logger="bounce_middleware"):
        assert post(app, postmark_bounce()).status_int == 500
        assert post(app, REFUSED).status_int == 503  # a refused body cannot be kept either
    assert ran == [] and store.records() == [] and store.records(rejected=True) == []
    assert "the delivery scope could not be entered (RuntimeError)" in caplog.text
    assert "SECRET-SCOPE-DETAIL" not in caplog.text


def test_a_store_without_the_02_methods_is_refused_at_construction() -> None:
    class StoreFrom01:
        """A custom store written for 0.1: no reject(), no resolve()."""

        def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
            raise NotImplementedError

        def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
            raise NotImplementedError

        def release(self, claim: Claim, *, finished: bool) -> None:
            raise NotImplementedError

        def records(self, **filters: Any) -> list[Any]:
            return []

    with pytest.raises(ConfigurationError, match="StoreFrom01 lacks reject, resolve"):
        BounceMiddleware(
            downstream,
            path=PATH,
            credentials=[f"{USER}:{PASSWORD}"],
            store=StoreFrom01(),  # type: ignore[arg-type]
        )
