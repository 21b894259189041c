"""Brevo requests through the real middleware: credentials and tokens, single events and
batches, stores, retries. Failures (429) and ``replay`` are in ``..._replay.py``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webob import Request
from webtest import TestApp, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, SQLiteStore, Store
from bounce_middleware.providers.brevo import Brevo, parse_brevo
from bounce_middleware.samples.brevo import (
    SAMPLE_KINDS,
    brevo_batch,
    brevo_body,
    brevo_event,
    brevo_headers,
    brevo_request,
    sample_request,
)
from tests.store_apps import Audit, downstream

PATH = "/hooks/brevo"
TOKEN = "brevo-http-tests-bearer-token"
CREDENTIALS = "brevo:brevo-http-tests-password"
BEARER = brevo_headers(token=TOKEN)
BASIC = brevo_headers(credentials=CREDENTIALS)


class FailsFor(Audit):
    """Fails for one address until ``fixed`` is set, like a handler whose row is locked."""

    def __init__(self, email: str) -> None:
        super().__init__()
        self.email = email
        self.fixed = False

    def __call__(self, bounce: Bounce) -> None:
        super().__call__(bounce)
        if bounce.email == self.email and not self.fixed:
            raise RuntimeError("that user's row is locked")


def make_app(provider: Brevo | None = None, *handlers: Any, store: Store | None = None) -> TestApp:
    return TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: provider or Brevo(tokens=[TOKEN])},
            handlers=handlers,
            store=store,
        )
    )


def deliver(app: TestApp, headers: dict[str, str], body: bytes, status: int) -> TestResponse:
    return app.request(PATH, status=status, method="POST", headers=headers, body=body)


def keys(*events: dict[str, Any]) -> list[str]:
    """The keys the parser gives these events (Brevo has no event id to predict them from)."""
    return [parse_brevo(brevo_body(event)).events[0].key for event in events]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore | SQLiteStore]:
    made = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "b.sqlite3")
    yield made
    made.close()


# -- authentication -------------------------------------------------------------------------


def test_a_bearer_token_or_basic_credentials_either_is_accepted_when_both_are_configured() -> None:
    audit = Audit()
    app = make_app(Brevo(credentials=[CREDENTIALS], tokens=[TOKEN]), audit)
    deliver(app, BEARER, brevo_body(brevo_event()), 200)
    deliver(app, BASIC, brevo_body(brevo_event()), 200)
    assert len(audit.calls) == 2


def test_only_what_is_configured_is_accepted() -> None:
    audit = Audit()
    by_token, by_basic = make_app(None, audit), make_app(Brevo(credentials=[CREDENTIALS]), audit)
    deliver(by_token, BASIC, brevo_body(brevo_event()), 401)
    response = deliver(by_basic, BEARER, brevo_body(brevo_event()), 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert audit.calls == []


def test_wrong_or_missing_authentication_gets_401_runs_nothing_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    audit, store = Audit(), SQLiteStore(tmp_path / "b.sqlite3")
    app = make_app(None, audit, store=store)
    raw = brevo_body(brevo_event(email="ann@example.com"))
    cases = [
        {},
        brevo_headers(token="brevo-http-tests-bearer-tokeX"),
        brevo_headers(token=TOKEN + "x"),
        {"Authorization": TOKEN},  # no scheme
        {"Authorization": f"Basic {TOKEN}"},
        brevo_headers(credentials="brevo:" + TOKEN),
    ]
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        for headers in cases:
            response = deliver(app, headers, raw, 401)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="bounce-middleware"'
            assert response.text.strip() == "authentication required"
    assert TOKEN not in caplog.text and "example.com" not in caplog.text
    assert audit.calls == []
    assert store.records() == [] and store.records(rejected=True) == []
    store.close()


class CountingInput(io.BytesIO):
    """``wsgi.input`` that counts the bytes the application read."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


@pytest.mark.parametrize("configured", ["tokens", "credentials"])
def test_a_wrong_token_or_password_is_refused_before_the_body_is_read(configured: str) -> None:
    audit = Audit()
    provider = Brevo(tokens=[TOKEN]) if configured == "tokens" else Brevo(credentials=[CREDENTIALS])
    good = BEARER if configured == "tokens" else BASIC
    wrong = brevo_headers(token="a-wrong-token-of-some-length")
    if configured == "credentials":
        wrong = brevo_headers(credentials="brevo:a-wrong-password-of-some-length")
    middleware = BounceMiddleware(downstream, routes={PATH: provider}, handlers=[audit])
    raw = brevo_body(brevo_event())
    for headers, status, consumed in ((wrong, 401, 0), (good, 200, len(raw))):
        stream = CountingInput(raw)
        request = Request.blank(PATH, method="POST", headers=headers)
        request.environ["wsgi.input"] = stream
        request.environ["CONTENT_LENGTH"] = str(len(raw))
        assert request.get_response(middleware).status_int == status
        assert stream.consumed == consumed
    assert len(audit.calls) == 1


def test_a_method_brevo_never_uses_is_refused_after_authentication() -> None:
    app = make_app()
    app.get(PATH, status=401)
    assert app.get(PATH, headers=BEARER, status=405).headers["Allow"] == "POST"


# -- events and batches ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_every_sample_kind_is_accepted_with_the_routes_token(kind: str) -> None:
    audit = Audit()
    deliver(
        make_app(None, audit), *sample_request(kind, email="ann@example.com", secret=TOKEN), 200
    )
    assert len(audit.calls) == int(kind not in ("delivered", "opened"))


def test_an_acknowledged_event_and_an_empty_batch_are_answered_200(store: Store) -> None:
    app = make_app(store=store)
    assert (
        "ignored: delivered"
        in deliver(app, *brevo_request(brevo_event("delivered"), token=TOKEN), 200).text
    )
    assert deliver(app, BEARER, b"[]", 200).text.strip() == "empty batch: no events"
    assert store.records() == [] and store.records(rejected=True) == []


def test_a_mixed_batch_dispatches_its_bounces_and_acknowledges_the_rest(store: Store) -> None:
    audit = Audit()
    events = brevo_batch("delivered", "hard", "opened", "soft", "complaint", "suppressed")
    deliver(make_app(None, audit, store=store), BEARER, brevo_body(events), 200)
    dispatched = keys(events[1], events[3], events[4], events[5])
    assert audit.calls == dispatched
    assert sorted(r.key for r in store.records()) == sorted(dispatched)
    assert all(r.finished for r in store.records())


def test_a_retried_event_is_not_applied_twice(store: Store) -> None:
    audit = Audit()
    app = make_app(None, audit, store=store)
    event = brevo_event("hard")
    deliver(app, BEARER, brevo_body(event), 200)
    assert deliver(app, BEARER, brevo_body(event), 200).text.strip() == "already processed"
    # The same event again in a batch (a webhook switched to batched mode), beside a new one.
    later = brevo_event("complaint")
    deliver(app, BEARER, brevo_body([event, later]), 200)
    assert audit.calls == keys(event, later)
    assert len(store.records()) == 2


def test_an_event_twice_in_one_batch_is_dispatched_once(store: Store) -> None:
    audit = Audit()
    event = brevo_event()
    deliver(make_app(None, audit, store=store), BEARER, brevo_body([event, event]), 200)
    assert audit.calls == keys(event)


def test_a_malformed_event_is_kept_alone_and_the_rest_of_the_batch_dispatched(
    store: Store,
) -> None:
    audit = Audit()
    good = brevo_batch("hard", "soft")
    broken = brevo_event("complaint", email="")
    raw = brevo_body([good[0], broken, good[1]])
    app = make_app(None, audit, store=store)
    deliver(app, BEARER, raw, 200)
    assert audit.calls == keys(*good)
    [kept] = store.records(rejected=True)
    assert json.loads(kept.body) == [broken]
    assert kept.reason == "required field email is missing or empty"
    deliver(app, BEARER, raw, 200)
    assert len(audit.calls) == 2 and len(store.records(rejected=True)) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": xxxxx, "event": "hard_bounce"}', "body is not valid JSON"),
        (brevo_body(brevo_event(ts_epoch="yesterday")), "field ts_epoch must be a Unix time"),
    ],
)
def test_a_body_refused_400_is_kept_as_a_rejected_record(
    store: Store, raw: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Brevo drops what gets a 400, so the body must not be lost here.
    audit = Audit()
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        response = deliver(make_app(None, audit, store=store), BEARER, raw, 400)
    assert response.text.startswith(reason)
    [kept] = store.records(rejected=True)
    assert kept.body == raw and kept.reason.startswith(reason)
    assert audit.calls == [] and store.records() == []
    assert "example.com" not in caplog.text
