"""An application module for the ``list`` and ``replay`` tests, written into a temporary
directory: a BounceMiddleware with two handlers, one of which fails while a file exists, on
a SQLite file or on its own MemoryStore (then found through ``--app``). Its parser refuses
every body while another file exists: the release before an upgrade, for rejected requests.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from webtest import TestApp

from bounce_middleware import PayloadError
from bounce_middleware.cli import main
from bounce_middleware.providers.postmark import parse_postmark
from bounce_middleware.store import Store
from bounce_middleware.testing import auth_headers, postmark_bounce

PATH = "/postmark/bounce"
USER = "postmark"

APP_MODULE = """
from pathlib import Path

from bounce_middleware import BounceMiddleware, MemoryStore, PayloadError
from bounce_middleware.providers import Postmark
from bounce_middleware.sqlite_store import SQLiteStore

CALLS = Path({calls!r})
BROKEN = Path({broken!r})
OLD_PARSER = Path({old_parser!r})
MEMORY = MemoryStore()


def steady(bounce):
    with CALLS.open("a") as calls:
        calls.write(f"steady {{bounce.key}}\\n")


def flaky(bounce):
    if BROKEN.exists():
        raise RuntimeError("the mail server is down")
    with CALLS.open("a") as calls:
        calls.write(f"flaky {{bounce.key}}\\n")


class Parser(Postmark):
    # While OLD_PARSER exists, the release before an upgrade: it refused these bodies.
    def parse(self, request):
        if OLD_PARSER.exists():
            raise PayloadError("field Email is missing")
        return super().parse(request)


def site(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the site"]


class Outer:
    # Some other middleware around ours: replay finds BounceMiddleware through `.app`.
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def make_store():
    return MEMORY if {kind!r} == "memory" else SQLiteStore({db!r})


def create_app():
    middleware = BounceMiddleware(
        site, routes={{{path!r}: Parser(credentials=["{user}:pw"])}}, store=make_store()
    )
    middleware.add_handler(steady, name="steady")
    middleware.add_handler(flaky, name="flaky")
    return Outer(middleware)


def broken_factory():
    raise RuntimeError("the database is down")


def wrong_factory():
    return "not an app"
"""


@dataclass
class Project:
    """An application module on sys.path, its store and its handlers' call log."""

    module: ModuleType
    kind: str  # "sqlite" or "memory"
    store_url: str
    calls: Path
    broken: Path
    old_parser: Path

    @property
    def spec(self) -> str:
        return f"{self.module.__name__}:create_app"

    @property
    def where(self) -> list[str]:
        """The options that name the store: its URL, or the application that holds it."""
        return ["--store", self.store_url] if self.kind == "sqlite" else ["--app", self.spec]

    def calls_made(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The application's store, as another process (or the middleware) would open it."""
        store: Store = self.module.make_store()
        try:
            yield store
        finally:
            if self.kind == "sqlite":
                store.close()  # type: ignore[attr-defined]

    def reject(self, body: bytes, reason: str, *, resolved: bool = False) -> str:
        """Keep a rejected request as the middleware does (and, if asked, resolve it)."""
        with self.store() as store:
            key = store.reject("postmark", body, reason)
            if resolved:
                store.resolve(key)
        return key

    def received(self, key: str) -> str:
        """When the rejected request ``key`` was kept, as the command prints it."""
        [record] = [r for r in self.listing("--rejected") if r["key"] == key]
        return datetime.fromisoformat(record["received_at"]).strftime("%Y-%m-%d %H:%M:%SZ")

    def listing(self, *options: str) -> list[dict[str, Any]]:
        """``list --json`` with ``options``."""
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["list", *self.where, "--json", *options]) == 0
        result: list[dict[str, Any]] = json.loads(out.getvalue())
        return result


def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> Iterator[Project]:
    """Write the application module for a store ``kind`` ("sqlite" or "memory"), import it."""
    db, calls = tmp_path / "bounces.sqlite3", tmp_path / "calls"
    broken, old_parser = tmp_path / "broken", tmp_path / "old-parser"
    name = "replay_app_for_cli_tests"
    (tmp_path / f"{name}.py").write_text(
        APP_MODULE.format(
            calls=str(calls),
            broken=str(broken),
            old_parser=str(old_parser),
            db=str(db),
            kind=kind,
            path=PATH,
            user=USER,
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module(name)
    yield Project(module, kind, f"sqlite:///{db}", calls, broken, old_parser)
    sys.modules.pop(name, None)


def deliver(project: Project, status: int, **fields: Any) -> str:
    """Post a bounce to the application, expecting ``status``; return its event key."""
    app = TestApp(project.module.create_app())
    payload = postmark_bounce(**fields)
    app.post_json(PATH, payload, headers=auth_headers(USER, "pw"), status=status)
    return f"postmark:{payload['ID']}"


def refusal(body: bytes) -> str:
    """Why today's Postmark parser refuses ``body``."""
    with pytest.raises(PayloadError) as refused:
        parse_postmark(body)
    return refused.value.reason


NOT_POSTMARK = b'{"Hello": "not postmark"}'


def body_of(**fields: Any) -> tuple[bytes, str]:
    """A Postmark bounce body and the key of its event."""
    payload = postmark_bounce(**fields)
    return json.dumps(payload).encode(), f"postmark:{payload['ID']}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """The application on a SQLite store."""
    yield from make_project(tmp_path, monkeypatch, "sqlite")


@pytest.fixture(params=["sqlite", "memory"])
def any_project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    """The application on each store: a SQLite file, and its own MemoryStore."""
    yield from make_project(tmp_path, monkeypatch, request.param)
