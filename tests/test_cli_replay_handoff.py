"""``replay`` runs the handlers itself, even for an application that hands events to Celery."""

from __future__ import annotations

from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware.cli.replay import replay_event
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.testing import auth_headers, postmark_bounce

from . import celery_app


def test_replay_delivers_in_this_process_instead_of_queueing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "bounces.sqlite3")
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    celery_app.create_ledger(ledger)
    monkeypatch.setenv("BOUNCE_CELERY_LEDGER", ledger)  # where the test handlers write
    # A broker nobody listens on: the webhook records the event, to be queued later.
    middleware = celery_app.make_middleware(celery_app.make_celery("redis://127.0.0.1:9/0"), store)
    headers = auth_headers(celery_app.USER, celery_app.PASSWORD)
    answer = TestApp(middleware).post_json(
        celery_app.POSTMARK_PATH, postmark_bounce(ID=55), headers=headers, status=200
    )
    assert answer.text.strip() == "accepted; recorded, to be queued later"
    [record] = store.records(unfinished=True)

    ok, line = replay_event(middleware, record, dry_run=False)

    assert ok, line
    assert "-> 200 accepted" in line
    assert store.records(unfinished=True) == []
    assert sorted(celery_app.effects(ledger)) == [
        ("postmark:55", "flaky"),
        ("postmark:55", "record"),
    ]
    store.close()
