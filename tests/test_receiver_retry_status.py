"""A provider that retries only on one status (Brevo: 429) gets it, with Retry-After."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bounce_middleware.memory_store import MemoryStore
from bounce_middleware.model import Bounce
from bounce_middleware.providers.brevo import Brevo
from bounce_middleware.receiver import Receiver
from bounce_middleware.request import post
from bounce_middleware.samples.brevo import brevo_body, brevo_event, brevo_headers
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import Claim

TOKEN = "brevo-test-token-5f0c2a9e7d31"


def failing(bounce: Bounce) -> None:
    raise RuntimeError("the user store is down")


def test_a_handler_failure_is_answered_429_with_retry_after_and_kept(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "b.db")
    receiver = Receiver({"/hooks/brevo": Brevo(tokens=[TOKEN])}, handlers=[failing], store=store)
    request = post("/hooks/brevo", brevo_body(brevo_event("hard")), brevo_headers(token=TOKEN))
    answer = receiver.answer(request)
    assert answer.status == 429
    # Once: the 500 had none; a 503 (store down: test_provider_brevo_replay) has its own.
    assert [h for h in answer.headers if h[0] == "Retry-After"] == [("Retry-After", "60")]
    (record,) = store.records(unfinished=True, limit=None)
    assert not record.completed  # kept for Brevo's retry, or for `replay` after its last one
    store.close()


class BuggyStore(MemoryStore):
    """A store with a bug: it raises something other than StoreUnavailable."""

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        raise KeyError("ann@example.com")  # a message that quotes the body


def test_an_unexpected_exception_is_answered_429_and_logged_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver({"/hooks/brevo": Brevo(tokens=[TOKEN])}, store=BuggyStore())
    request = post("/hooks/brevo", brevo_body(brevo_event("hard")), brevo_headers(token=TOKEN))
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        answer = receiver.answer(request)
    assert answer.status == 429
    assert ("Retry-After", "60") in answer.headers
    assert "unexpected KeyError at" in caplog.text and "-> 429" in caplog.text
    assert "ann@example.com" not in caplog.text


def test_without_a_retry_status_an_unexpected_exception_reaches_the_server() -> None:
    from bounce_middleware.providers.sparkpost import SparkPost
    from bounce_middleware.samples.sparkpost import sparkpost_body, sparkpost_event

    receiver = Receiver({"/sp": SparkPost(tokens=[TOKEN])}, store=BuggyStore())
    request = post(
        "/sp",
        sparkpost_body([sparkpost_event("hard")]),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with pytest.raises(KeyError):
        receiver.answer(request)
