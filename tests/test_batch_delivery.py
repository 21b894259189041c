"""A batch's outcomes: recorded as it goes, retried after a blip, released after a failure.

Found by review: outcomes written only at the end meant a worker killed
mid-batch (gunicorn's timeout raises SystemExit) kept nothing, so every retry
started from zero and died at the same place; and a failed write left every
claim leased, so SNS's three retries were all answered "busy".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import bounce_middleware.batch as batch
import bounce_middleware.handlers as handlers
from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, StoreUnavailable
from bounce_middleware.providers import SendGrid
from bounce_middleware.request import post
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import Settlement, Store
from bounce_middleware.testing import (
    SENDGRID_TEST_PUBLIC_KEY,
    sendgrid_event,
    sign_sendgrid_request,
)

PATH = "/hooks/sendgrid"


class Killed(BaseException):
    """What a worker's timeout raises inside the request (SystemExit in gunicorn)."""


def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def request(count: int) -> Any:
    events = [sendgrid_event("hard", email=f"user{i}@example.com") for i in range(count)]
    headers, body = sign_sendgrid_request(events)
    return post(PATH, body, headers)


def middleware(store: Store, handler: Any, **options: Any) -> BounceMiddleware:
    route = {PATH: SendGrid(public_key=SENDGRID_TEST_PUBLIC_KEY)}
    return BounceMiddleware(site, routes=route, handlers=[handler], store=store, **options)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "bounces.sqlite3")


def finished(store: Store) -> int:
    return sum(r.finished for r in store.records(limit=None))


def test_a_worker_killed_mid_batch_keeps_what_it_finished(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "SETTLE_EVERY_EVENTS", 4)
    budget = {"left": 0}
    ran: list[str] = []

    def slow(bounce: Bounce) -> None:
        if budget["left"] == 0:
            raise Killed
        budget["left"] -= 1
        ran.append(bounce.key)

    app = middleware(store, slow, lease_seconds=0.05)
    webhook = request(12)
    for attempt in range(2):
        budget["left"] = 5
        with pytest.raises(Killed):
            app.answer(webhook)
        # Killed after 5 handler runs: the 5 are kept (4 by the periodic write, 1 on
        # the way out), so each retry goes further instead of starting again.
        assert finished(store) == 5 * (attempt + 1)
        time.sleep(0.06)  # the retry comes after the dead worker's leases expired
    budget["left"] = 5
    assert app.answer(webhook).status == 200
    assert finished(store) == 12
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 12  # each event ran once


def test_outcomes_are_written_every_so_many_events(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "SETTLE_EVERY_EVENTS", 10)
    writes: list[int] = []
    real = type(store).settle_many

    def counting(self: Store, settlements: Sequence[Settlement]) -> None:
        writes.append(len(settlements))
        real(self, settlements)

    monkeypatch.setattr(type(store), "settle_many", counting)
    assert middleware(store, lambda bounce: None).answer(request(25)).status == 200
    assert writes == [10, 10, 5]


class Blips(MemoryStore):
    """A real MemoryStore whose settle_many fails the next ``failures`` times."""

    failures = 0

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the store is briefly unavailable")
        super().settle_many(settlements)


def test_a_failed_write_of_the_outcomes_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "COMPLETION_RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(batch, "COMPLETION_RETRY_DELAYS", (0.0, 0.0))
    store = Blips()
    ran: list[str] = []
    app = middleware(store, lambda bounce: ran.append(bounce.key))
    store.failures = 2
    assert app.answer(request(3)).status == 200
    assert (finished(store), len(ran)) == (3, 3)


def test_after_the_store_failed_the_retry_is_not_answered_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch, "COMPLETION_RETRY_DELAYS", (0.0, 0.0))
    store = Blips()
    ran: list[str] = []
    app = middleware(store, lambda bounce: ran.append(bounce.key))
    webhook = request(3)
    store.failures = 3  # every try of the outcomes; the release after them succeeds
    answer = app.answer(webhook)
    assert answer.status == 503 and ("Retry-After", "60") in answer.headers
    # The claims were released (SNS retries 20 s later; a 300 s lease would answer
    # "busy" to all three retries), and the handlers' successes kept with them.
    assert app.answer(webhook).status == 200
    assert finished(store) == 3 and len(ran) == 3
