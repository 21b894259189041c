"""Mailjet requests through the real middleware (WSGI, WebTest) on a SQLite store:
credentials before the body, statuses, grouped batches, retries and replay."""

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

from bounce_middleware import Bounce, BounceMiddleware, SQLiteStore
from bounce_middleware.cli import main
from bounce_middleware.providers.mailjet import Mailjet, parse_mailjet
from bounce_middleware.samples.mailjet import (
    SAMPLE_KINDS,
    mailjet_batch,
    mailjet_body,
    mailjet_event,
    sample_request,
)
from bounce_middleware.testing import basic_auth_header
from tests.store_apps import Audit, downstream

PATH = "/hooks/mailjet"
USER, PASSWORD = "mailjet", "mailjet-http-tests-password"
AUTH = {"Authorization": basic_auth_header(USER, PASSWORD), "Content-Type": "application/json"}


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


#: The handlers of the application ``replay --app`` builds (replay_app, below).
REPLAY_HANDLERS: list[Any] = []


def replay_app() -> BounceMiddleware:
    """The application as the replay command finds it: the same route and handlers."""
    return BounceMiddleware(
        downstream,
        routes={PATH: Mailjet(credentials=[f"{USER}:{PASSWORD}"])},
        handlers=REPLAY_HANDLERS,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    made = SQLiteStore(tmp_path / "b.db")
    yield made
    made.close()


def make_app(store: SQLiteStore | None, *handlers: Any) -> TestApp:
    return TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: Mailjet(credentials=[f"{USER}:{PASSWORD}"])},
            handlers=handlers,
            store=store,
        )
    )


def deliver(app: TestApp, body: bytes, status: int, headers: dict[str, str] = AUTH) -> TestResponse:
    return app.request(PATH, method="POST", headers=headers, body=body, status=status)


def key_of(event: dict[str, Any]) -> str:
    """The key the provider gives ``event``, alone or grouped."""
    [bounce] = parse_mailjet(mailjet_body(event)).events
    return bounce.key


# -- authentication -------------------------------------------------------------------------


class CountingInput(io.BytesIO):
    """``wsgi.input`` that counts the bytes the application read."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def test_missing_or_wrong_credentials_get_401_before_the_body_is_read(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    audit = Audit()
    middleware = BounceMiddleware(
        downstream,
        routes={PATH: Mailjet(credentials=[f"{USER}:{PASSWORD}"])},
        handlers=[audit],
        store=store,
    )
    body = mailjet_body(mailjet_event("hard", email="ann@example.com"))
    cases = [
        (None, 401, 0),
        (basic_auth_header(USER, "wrong-password"), 401, 0),
        (basic_auth_header("someone", PASSWORD), 401, 0),
        (f"Bearer {PASSWORD}", 401, 0),
        (basic_auth_header(USER, PASSWORD), 200, len(body)),
    ]
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        for authorization, status, consumed in cases:
            stream = CountingInput(body)
            request = Request.blank(PATH, method="POST")
            if authorization is not None:
                request.headers["Authorization"] = authorization
            request.environ["wsgi.input"] = stream
            request.environ["CONTENT_LENGTH"] = str(len(body))
            response = request.get_response(middleware)
            assert response.status_int == status
            assert stream.consumed == consumed
            if status == 401:
                assert response.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert len(audit.calls) == 1
    [record] = store.records()
    assert record.key == audit.calls[0]
    assert store.records(rejected=True) == []  # unauthenticated bodies are never kept
    assert PASSWORD not in caplog.text and "ann@example.com" not in caplog.text


def test_a_get_is_401_without_credentials_and_405_with_them() -> None:
    app = make_app(None)
    app.get(PATH, status=401)
    assert app.get(PATH, headers=AUTH, status=405).headers["Allow"] == "POST"


# -- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SAMPLE_KINDS)
def test_every_sample_kind_is_accepted(kind: str, store: SQLiteStore) -> None:
    audit = Audit()
    headers, body = sample_request(kind, email="ann@example.com")
    response = deliver(make_app(store, audit), body, 200, AUTH | headers)
    dispatched = kind not in ("sent", "open", "click")
    assert len(audit.calls) == int(dispatched)
    if not dispatched:
        assert response.text.strip() == f"ignored: {kind} records are not bounces"


def test_a_malformed_single_event_is_400_kept_and_replay_refuses_it_again(
    store: SQLiteStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = Audit()
    app = make_app(store, audit)
    bad = mailjet_event("hard", email="ann@example.com", time="yesterday")
    body = mailjet_body(bad)
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        response = deliver(app, body, 400)
    assert response.text.strip() == "field time must be an integer Unix time, not a string"
    assert "ann@example.com" not in caplog.text and "yesterday" not in caplog.text
    [kept] = store.records(rejected=True)
    assert (kept.body, kept.reason, kept.provider) == (body, response.text.strip(), "mailjet")
    assert audit.calls == [] and store.records() == []

    REPLAY_HANDLERS[:] = [audit]
    url = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["replay", "--store", url, "--app", f"{__name__}:replay_app"]) == 1
    assert "still refused: field time must be an integer Unix time" in capsys.readouterr().out
    assert audit.calls == []


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'"bounce"', b"{}", b'{"event": "bounce", "email": 3}']
)
def test_bodies_that_can_never_be_events_get_400_and_are_kept(
    body: bytes, store: SQLiteStore
) -> None:
    audit = Audit()
    deliver(make_app(store, audit), body, 400)
    [kept] = store.records(rejected=True)
    assert kept.body == body and audit.calls == []


def test_an_empty_grouped_batch_is_answered_200_and_keeps_nothing(store: SQLiteStore) -> None:
    response = deliver(make_app(store), b"[]", 200)
    assert response.text.strip() == "empty batch: no events"
    assert store.records() == [] and store.records(rejected=True) == []


# -- grouped batches ------------------------------------------------------------------------


def test_a_grouped_batch_dispatches_its_bounces_and_acknowledges_the_rest(
    store: SQLiteStore,
) -> None:
    audit = Audit()
    batch = mailjet_batch("sent", "hard", "open", "soft", "click", "complaint", "unsubscribe")
    deliver(make_app(store, audit), mailjet_body(batch), 200)
    expected = [key_of(batch[i]) for i in (1, 3, 5, 6)]
    assert audit.calls == expected
    assert sorted(r.key for r in store.records()) == sorted(expected)
    assert all(r.finished for r in store.records())
    assert {r.type for r in store.records()} == {"bounce", "spam", "unsub"}


def test_a_retried_grouped_batch_is_not_applied_twice(store: SQLiteStore) -> None:
    audit = Audit()
    app = make_app(store, audit)
    batch = mailjet_batch("hard", "soft", "complaint")
    body = mailjet_body(batch)
    deliver(app, body, 200)
    deliver(app, body, 200)  # Mailjet's retry: the same bytes
    # A later group holding the same events again (re-serialised), and one of them alone.
    deliver(app, json.dumps(batch, indent=2).encode(), 200)
    deliver(app, mailjet_body(batch[1]), 200)
    assert audit.calls == [key_of(event) for event in batch]
    assert len(store.records()) == 3


def test_an_event_twice_in_one_grouped_batch_is_dispatched_once(store: SQLiteStore) -> None:
    audit = Audit()
    event = mailjet_event("hard")
    deliver(make_app(store, audit), mailjet_body([event, event]), 200)
    assert audit.calls == [key_of(event)]


def test_a_malformed_event_of_a_batch_is_kept_alone_and_the_rest_dispatched(
    store: SQLiteStore,
) -> None:
    audit = Audit()
    app = make_app(store, audit)
    good = mailjet_batch("hard", "complaint")
    broken = mailjet_event("soft", MessageID=1.0442721676605645e17)
    body = mailjet_body([good[0], broken, good[1]])
    deliver(app, body, 200)
    assert audit.calls == [key_of(event) for event in good]
    [kept] = store.records(rejected=True)
    assert json.loads(kept.body) == [broken]
    assert kept.reason == "field MessageID must be an integer, not a number"
    # A retry changes nothing.
    deliver(app, body, 200)
    assert len(audit.calls) == 2 and len(store.records(rejected=True)) == 1


def test_a_failing_handler_gets_500_mailjet_retries_and_replay_finishes_it(
    store: SQLiteStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit, fails = Audit(), FailsFor("locked@example.com")
    app = make_app(store, audit, fails)
    batch = [
        mailjet_event("hard", email="ann@example.com"),
        mailjet_event("soft", email="locked@example.com", MessageID=2**63 + 7),
        mailjet_event("complaint", email="bob@example.com"),
    ]
    keys = [key_of(event) for event in batch]
    body = mailjet_body(batch)
    deliver(app, body, 500)
    assert audit.calls == keys and fails.calls == keys
    deliver(app, body, 500)  # Mailjet retries 30 s later: only the failed handler runs
    assert audit.calls == keys and fails.calls == [*keys, keys[1]]
    [pending] = store.records(unfinished=True)
    assert pending.key == keys[1]

    # Mailjet gave up after 24 h; the row is unlocked; the operator replays.
    fails.fixed = True
    REPLAY_HANDLERS[:] = [audit, fails]
    url = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["replay", "--store", url, "--app", f"{__name__}:replay_app"]) == 0
    out = capsys.readouterr().out
    assert f"{keys[1]} bounce locked@example.com: ran " in out and "-> 200" in out
    assert audit.calls == keys and fails.calls == [*keys, keys[1], keys[1]]
    assert store.records(unfinished=True) == []
    # Should Mailjet's retry come after all, nothing runs again.
    deliver(app, body, 200)
    assert fails.calls == [*keys, keys[1], keys[1]]
