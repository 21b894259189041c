"""``list``, ``prune`` and ``replay`` with ``--app`` naming an ASGI application, whose store
is synchronous (a SQLiteStore) or has ``async def`` methods (the same file behind them):
the commands use the store the middleware itself calls, never a coroutine unawaited."""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from bounce_middleware import SQLiteStore
from bounce_middleware.cli import main
from bounce_middleware.testing import auth_headers, postmark_bounce

APP = """
import os
from pathlib import Path

from bounce_middleware import SQLiteStore
from bounce_middleware.asgi import BounceMiddleware
from bounce_middleware.providers import Postmark
from bounce_middleware.store import STORE_METHODS

BROKEN = Path({broken!r})
DONE = []


class AsyncStore:
    # A store of one's own whose every method is async def (over a SQLite file).
    def __init__(self, inner):
        self.inner = inner

    def close(self):
        self.inner.close()


def _forward(name):
    async def method(self, *args, **kwargs):
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name in (*STORE_METHODS, "prune", "counts"):
    setattr(AsyncStore, _name, _forward(_name))


async def flag(bounce):
    if BROKEN.exists():
        raise RuntimeError("the user store is down")
    DONE.append(bounce.key)


async def site(scope, receive, send):
    await send({{"type": "http.response.start", "status": 418, "headers": []}})
    await send({{"type": "http.response.body", "body": b"the site"}})


store = SQLiteStore({db!r})
app = BounceMiddleware(
    site,
    routes={{"/pm": Postmark(credentials=["postmark:a-long-cli-password"])}},
    handlers=[flag],
    store=AsyncStore(store) if {kind!r} == "async" else store,
)
"""


@dataclass
class AsgiProject:
    """The application module, its SQLite file and the file that breaks its handler."""

    module: ModuleType
    db: Path
    broken: Path

    spec = "asgi_app_for_cli_ops:app"

    def post(self, status: int, **fields: Any) -> str:
        """Post a Postmark bounce through the ASGI app, expecting ``status``; its key."""
        payload = postmark_bounce(**fields)

        async def send() -> int:
            transport = httpx.ASGITransport(app=self.module.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answer = await client.post(
                    "/pm", json=payload, headers=auth_headers("postmark", "a-long-cli-password")
                )
            return answer.status_code

        assert asyncio.run(send()) == status
        return f"postmark:{payload['ID']}"

    def age(self, key: str, days: int) -> None:
        moment = datetime.now(UTC) - timedelta(days=days)
        with sqlite3.connect(self.db) as conn:
            conn.execute(
                "UPDATE bounce_event SET received_at = ? WHERE key = ?",
                (moment.isoformat(timespec="microseconds"), key),
            )
        conn.close()

    def finished(self) -> dict[str, bool]:
        store = SQLiteStore(self.db)
        try:
            return {r.key: r.finished for r in store.records(limit=None)}
        finally:
            store.close()


@pytest.fixture(params=["sync", "async"])
def asgi_project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AsgiProject]:
    db, broken = tmp_path / "b.sqlite3", tmp_path / "broken"
    source = APP.format(db=str(db), broken=str(broken), kind=request.param)
    (tmp_path / "asgi_app_for_cli_ops.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    monkeypatch.delitem(sys.modules, "asgi_app_for_cli_ops", raising=False)
    module = importlib.import_module("asgi_app_for_cli_ops")
    yield AsgiProject(module, db, broken)
    module.store.close()
    sys.modules.pop("asgi_app_for_cli_ops", None)


def test_list_app_lists_the_asgi_middlewares_store(
    asgi_project: AsgiProject, capsys: pytest.CaptureFixture[str]
) -> None:
    done = asgi_project.post(200, email="ann@example.com")
    asgi_project.broken.touch()
    stuck = asgi_project.post(500, email="bob@example.com")
    capsys.readouterr()

    assert main(["list", "--app", asgi_project.spec, "--json"]) == 0
    out, err = capsys.readouterr()
    assert [(r["key"], r["finished"]) for r in json.loads(out)] == [(stuck, False), (done, True)]
    assert err.startswith("store: 2 events, 1 unfinished (oldest received ")

    assert main(["list", "--app", asgi_project.spec, "--unfinished"]) == 0
    out = capsys.readouterr().out
    assert stuck in out and done not in out


def test_prune_app_prunes_the_asgi_middlewares_store(
    asgi_project: AsgiProject, capsys: pytest.CaptureFixture[str]
) -> None:
    old = asgi_project.post(200, email="ann@example.com")
    asgi_project.broken.touch()
    stuck = asgi_project.post(500, email="bob@example.com")
    asgi_project.broken.unlink()
    recent = asgi_project.post(200, email="cy@example.com")
    asgi_project.age(old, 40)
    asgi_project.age(stuck, 40)
    capsys.readouterr()

    assert main(["prune", "--older-than", "30d", "--app", asgi_project.spec, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would delete 1 finished event received before ")
    assert main(["prune", "--older-than", "30d", "--app", asgi_project.spec]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("deleted 1 finished event received before ")
    assert err.startswith("store: 2 events, 1 unfinished (oldest received ")
    assert asgi_project.finished() == {stuck: False, recent: True}


def test_replay_app_finishes_events_and_rejected_requests_of_the_asgi_middlewares_store(
    asgi_project: AsgiProject, capsys: pytest.CaptureFixture[str]
) -> None:
    asgi_project.broken.touch()
    stuck = asgi_project.post(500, email="bob@example.com")
    asgi_project.broken.unlink()
    # A request an earlier release refused, which today's parser accepts.
    payload = postmark_bounce(email="cy@example.com")
    asgi_project.module.store.reject(
        "postmark", json.dumps(payload).encode(), "field ID is missing"
    )
    capsys.readouterr()

    assert main(["replay", "--app", asgi_project.spec, "--dry-run"]) == 0
    assert "dry run: no handler was run" in capsys.readouterr().out
    assert asgi_project.module.DONE == []

    assert main(["replay", "--app", asgi_project.spec]) == 0
    out, err = capsys.readouterr()
    assert "replayed 1 event(s): 1 ok, 0 failed" in out
    assert "replayed 1 rejected request(s): 1 resolved, 0 still rejected" in out
    assert err == "store: 2 events, 0 unfinished, 0 rejected unresolved\n"
    handled: list[str] = asgi_project.module.DONE
    assert handled == [stuck, f"postmark:{payload['ID']}"]
    assert asgi_project.finished() == {stuck: True, f"postmark:{payload['ID']}": True}


def test_replay_app_with_store_option_on_an_asgi_app(
    asgi_project: AsgiProject, capsys: pytest.CaptureFixture[str]
) -> None:
    asgi_project.broken.touch()
    stuck = asgi_project.post(500, email="bob@example.com")
    asgi_project.broken.unlink()
    capsys.readouterr()

    url = f"sqlite:///{asgi_project.db}"
    assert main(["replay", "--app", asgi_project.spec, "--store", url]) == 0
    assert "replayed 1 event(s): 1 ok, 0 failed" in capsys.readouterr().out
    assert asgi_project.finished() == {stuck: True}
