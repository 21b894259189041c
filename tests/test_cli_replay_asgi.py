"""``replay --app`` finds the ASGI BounceMiddleware, in a Starlette app's middleware too."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from bounce_middleware import SQLiteStore
from bounce_middleware.cli import main
from bounce_middleware.testing import auth_headers, postmark_bounce

APP = """
import os

from starlette.applications import Starlette

from bounce_middleware import SQLiteStore
from bounce_middleware.asgi import BounceMiddleware
from bounce_middleware.providers import Postmark

DONE = []


def flag(bounce):
    if os.environ.get("FAIL_HANDLER"):
        raise RuntimeError("the user store is down")
    DONE.append(bounce.key)


app = Starlette()
app.add_middleware(
    BounceMiddleware,
    routes={"/pm": Postmark(credentials=["postmark:a-long-replay-password"])},
    handlers=[flag],
    store=SQLiteStore(os.environ["REPLAY_DB"]),
)
"""


@pytest.mark.anyio
async def test_replay_finishes_an_event_through_a_starlette_apps_asgi_middleware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "asgi_replay_app.py").write_text(textwrap.dedent(APP))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("REPLAY_DB", str(tmp_path / "b.sqlite3"))
    monkeypatch.setenv("FAIL_HANDLER", "1")
    monkeypatch.delitem(sys.modules, "asgi_replay_app", raising=False)
    import asgi_replay_app  # type: ignore[import-not-found]

    transport = httpx.ASGITransport(app=asgi_replay_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.post(
            "/pm",
            json=postmark_bounce(email="ann@example.com", ID=4242),
            headers=auth_headers("postmark", "a-long-replay-password"),
        )
    assert answer.status_code == 500
    monkeypatch.delenv("FAIL_HANDLER")

    assert main(["replay", "--app", "asgi_replay_app:app"]) == 0
    assert "postmark:4242" in capsys.readouterr().out
    assert asgi_replay_app.DONE == ["postmark:4242"]
    store = SQLiteStore(tmp_path / "b.sqlite3")
    assert [r.finished for r in store.records()] == [True]
    store.close()
