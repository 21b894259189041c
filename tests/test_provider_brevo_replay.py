"""Brevo drops an event on any 5xx: failures are answered 429 (the one status it retries),
the event stays unfinished in the store, and ``bounce-middleware replay`` finishes it once
Brevo gives up. What Brevo drops on 400 is kept as a rejected record.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware import Bounce, SQLiteStore, Store
from bounce_middleware.cli import main
from bounce_middleware.samples.brevo import brevo_batch, brevo_body, brevo_event
from tests.store_apps import Audit
from tests.test_provider_brevo_http import (
    BEARER,
    PATH,
    TOKEN,
    FailsFor,
    deliver,
    keys,
    make_app,
)
from tests.test_provider_brevo_http import store as store  # noqa: F401 - the fixture

# -- failures: 429, the only status Brevo retries -------------------------------------------


def test_a_failing_handler_is_answered_429_and_its_retry_runs_only_what_failed(
    store: Store,
) -> None:
    audit, fails = Audit(), FailsFor("locked@example.com")
    app = make_app(None, audit, fails, store=store)
    ann, locked = (
        brevo_event("hard", email="ann@example.com"),
        brevo_event("hard", email="locked@example.com"),
    )
    ann_key, locked_key = keys(ann, locked)
    response = deliver(app, BEARER, brevo_body(locked), 429)
    assert response.text.strip() == "a handler failed; the event will be retried"
    # The retry comes in a batch beside a new event: only the failed handler runs again.
    deliver(app, BEARER, brevo_body([ann, locked]), 429)
    assert audit.calls == [locked_key, ann_key]
    assert fails.calls == [locked_key, ann_key, locked_key]
    [unfinished] = store.records(unfinished=True)
    assert unfinished.key == locked_key  # kept: replay finishes it if Brevo gives up
    fails.fixed = True
    deliver(app, BEARER, brevo_body([ann, locked]), 200)
    deliver(app, BEARER, brevo_body([ann, locked]), 200)
    assert audit.calls == [locked_key, ann_key]
    assert fails.calls == [locked_key, ann_key, locked_key, locked_key]
    assert all(r.finished for r in store.records())


def test_an_unavailable_store_is_answered_429_with_retry_after(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    SQLiteStore(path).check()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a long write elsewhere holds the lock
    store = SQLiteStore(path, timeout=0.05)
    audit = Audit()
    app = make_app(None, audit, store=store)
    event = brevo_event()
    response = deliver(app, BEARER, brevo_body(event), 429)
    assert response.headers["Retry-After"] == "60"
    assert audit.calls == []
    # A body refused while the store cannot keep it: 429 too, not a 400 that Brevo drops.
    response = deliver(app, BEARER, b"not json", 429)
    assert response.headers["Retry-After"] == "60"
    holder.execute("ROLLBACK")
    holder.close()
    deliver(app, BEARER, brevo_body(event), 200)
    deliver(app, BEARER, b"not json", 400)
    assert audit.calls == keys(event)
    store.close()


def test_no_answer_to_brevo_is_a_5xx_that_would_drop_the_event(store: Store) -> None:
    def broken(bounce: Bounce) -> None:
        raise RuntimeError("the mail server is down")

    app = make_app(None, broken, store=store)
    for raw in (brevo_body(brevo_event()), brevo_body(brevo_batch("hard", "soft"))):
        assert deliver(app, BEARER, raw, 429).status_int == 429


# -- Brevo gave up: replay finishes the event -----------------------------------------------

APP_MODULE = """
from pathlib import Path

from bounce_middleware import BounceMiddleware
from bounce_middleware.providers.brevo import Brevo
from bounce_middleware.sqlite_store import SQLiteStore

BROKEN = Path({broken!r})
CALLS = Path({calls!r})


def suppress(bounce):
    if BROKEN.exists():
        raise RuntimeError("the user database is down")
    with CALLS.open("a") as calls:
        calls.write(f"suppress {{bounce.email}}\\n")


def site(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the site"]


def create_app():
    middleware = BounceMiddleware(
        site, routes={{{path!r}: Brevo(tokens=[{token!r}])}}, store=SQLiteStore({db!r})
    )
    middleware.add_handler(suppress, name="suppress")
    return middleware
"""


def test_an_event_brevo_gave_up_on_is_finished_by_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, broken, calls = tmp_path / "b.sqlite3", tmp_path / "broken", tmp_path / "calls"
    name = "brevo_replay_app_for_tests"
    (tmp_path / f"{name}.py").write_text(
        APP_MODULE.format(broken=str(broken), calls=str(calls), path=PATH, token=TOKEN, db=str(db))
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = __import__(name)
    replay = ["replay", "--store", f"sqlite:///{db}", "--app", f"{name}:create_app"]

    broken.touch()
    event = brevo_event("hard", email="ann@example.com")
    [key] = keys(event)
    app = TestApp(module.create_app())
    # Brevo's first try and its four retries all fail: then it gives up.
    for _ in range(5):
        deliver(app, BEARER, brevo_body(event), 429)
    assert not calls.exists()

    broken.unlink()
    assert main(replay) == 0
    out = capsys.readouterr().out
    assert f"{key} hard_bounce ann@example.com: ran suppress -> 200 accepted" in out
    assert calls.read_text() == "suppress ann@example.com\n"
    assert main(replay) == 0
    assert capsys.readouterr().out == "nothing to replay: every recorded bounce is finished\n"
    # A late retry after all runs nothing.
    deliver(TestApp(module.create_app()), BEARER, brevo_body(event), 200)
    assert calls.read_text() == "suppress ann@example.com\n"
    sys.modules.pop(name, None)


def test_a_rejected_body_is_replayed_by_replay_and_stays_when_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, calls = tmp_path / "b.sqlite3", tmp_path / "calls"
    name = "brevo_rejected_app_for_tests"
    (tmp_path / f"{name}.py").write_text(
        APP_MODULE.format(
            broken=str(tmp_path / "never"), calls=str(calls), path=PATH, token=TOKEN, db=str(db)
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = __import__(name)
    deliver(TestApp(module.create_app()), BEARER, b'{"event": "hard_bounce"}', 400)
    assert main(["replay", "--store", f"sqlite:///{db}", "--app", f"{name}:create_app"]) == 1
    out = capsys.readouterr().out
    assert "still refused: required field email is missing or empty" in out
    assert not calls.exists()
    sys.modules.pop(name, None)
