"""``bounce-middleware sweep --app``: queue again what the broker lost, on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware.cli import main
from bounce_middleware.testing import auth_headers, postmark_bounce

from . import celery_app
from .redis_server import RedisServer

FACTORY = "tests.celery_app:application_factory"


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


def test_sweep_queues_again_an_event_whose_message_the_broker_lost(
    tmp_path: Path,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BOUNCE_CELERY_STORE", f"sqlite:///{tmp_path / 'bounces.sqlite3'}")
    monkeypatch.setattr(celery_app, "settings_celery", celery_app.make_celery(redis.url))
    web = TestApp(celery_app.application_factory())
    headers = auth_headers(celery_app.USER, celery_app.PASSWORD)
    web.post_json(celery_app.POSTMARK_PATH, postmark_bounce(ID=31), headers=headers, status=200)
    assert redis.queued("bounce-tests") == 1
    redis.stop()
    redis.start()  # a broker restarted without its data: the message is gone
    assert redis.queued("bounce-tests") == 0

    assert main(["sweep", "--app", FACTORY, "--older-than", "1h"]) == 0
    assert capsys.readouterr().out == "queued 0 unfinished event(s) again\n"
    time.sleep(1.1)  # the event must be older than the shortest --older-than, 1 s
    assert main(["sweep", "--app", FACTORY, "--older-than", "1s"]) == 0
    assert capsys.readouterr().out == "queued 1 unfinished event(s) again\n"
    assert redis.queued("bounce-tests") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--app", "bounce_middleware.demo:make_app"], "hands no events to a task queue"),
        (["--app", FACTORY, "--older-than", "0s"], "--older-than:"),
    ],
)
def test_sweep_refuses_what_it_cannot_do_in_one_line(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BOUNCE_DEMO_DB", str(tmp_path / "demo.sqlite3"))
    from bounce_middleware.cli.common import close_store
    from bounce_middleware.demo import make_app

    close_store(make_app(tmp_path / "demo.sqlite3", credentials=["postmark:pw"]).store)
    assert main(["sweep", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
