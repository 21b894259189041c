"""The Pyramid example app: loaded from its ``.ini`` through PasteDeploy, built through
``Configurator``, and served by ``pserve``."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from pyramid.paster import get_app, get_appsettings
from pyramid.router import Router
from webtest import TestApp

from bounce_middleware import BounceMiddleware
from bounce_middleware.adapters.pyramid import wrap
from bounce_middleware.testing import auth_headers, postmark_bounce

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pyramid_app"
PATH = "/postmark/bounce"
HEADERS = {**auth_headers("postmark", "s3cret"), "Content-Type": "application/json"}


INSTALL_HINT = "the example is installed as the README says: pip install -e examples/pyramid_app"


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    """The example's development.ini, copied so that ``%(here)s`` (the database) is tmp_path.

    Found through its installed entry point, as pserve finds it: no sys.path changes.
    """
    names = {e.name for e in entry_points(group="paste.app_factory") if e.module == "pyramid_app"}
    assert names == {"main"}, INSTALL_HINT
    target = tmp_path / "development.ini"
    shutil.copy(EXAMPLE / "development.ini", target)
    return target


def log_in(testapp: TestApp[Any], name: str, password: str) -> Any:
    form = testapp.get("/login").forms["login"]
    form["name"] = name
    form["password"] = password
    return form.submit(status=303).follow()


def flashed(page: Any, queue: str) -> str:
    """The text of the page's flash message of one queue (the app's CSS class)."""
    tag = page.html.find("p", class_=f"flash {queue}")
    assert tag is not None, page.text
    text: str = tag.text
    return text


def bounce(testapp: TestApp[Any], email: str, event: int = 1) -> None:
    """A hard bounce for ``email``: ``event`` tells the events of one address apart."""
    payload = postmark_bounce(email=email, ID=hash((email, event)) & 0xFFFFFFFF)
    testapp.post(PATH, json.dumps(payload), headers=HEADERS, status=200)


def test_ini_pipeline_puts_the_filter_in_front(ini: Path) -> None:
    app = get_app(str(ini), "main")
    assert isinstance(app, BounceMiddleware)
    assert isinstance(app.app, Router)
    assert list(app.routes) == [PATH]

    # The README's walk-through, step by step.
    testapp = TestApp(app)
    bounce(testapp, "Ann@Example.com", event=1)
    home = log_in(testapp, "ann", "ann-password")  # "shown once, on the first page"
    assert flashed(home, "warning").startswith(
        "We could not deliver e-mail to Ann@Example.com: The server was unable"
    )
    assert "flash warning" not in testapp.get("/").text  # once only

    bounce(testapp, "ann@example.com", event=2)  # "after another bounce..."
    account = testapp.get("/account")  # "...opening the address page shows the new notice"
    assert flashed(account, "warning").startswith("We could not deliver e-mail to ann@example")
    form = account.forms["account"]
    form["email"] = "ann@fixed.example.com"  # "Change the address on that page"
    home = form.submit(status=303).follow()
    assert flashed(home, "info") == "Your address is now ann@fixed.example.com."
    assert "flash warning" not in home.text

    bounce(testapp, "ann@example.com", event=3)  # "Send one more and reload: nothing"
    assert "flash warning" not in testapp.get("/").text
    assert "flash warning" not in testapp.get("/account").text


def test_notices_are_shown_on_get_only(ini: Path) -> None:
    testapp = TestApp(get_app(str(ini), "main"))
    log_in(testapp, "bob", "bob-password")
    bounce(testapp, "bob@example.com")
    testapp.head("/")
    form = testapp.get("/login").forms["login"]  # a GET: shows the notice...
    assert "flash warning" in form.response.text
    bounce(testapp, "bob@example.com", event=2)
    form["name"], form["password"] = "bob", "bob-password"
    assert "flash warning" not in form.submit(status=303).text  # ...a POST does not
    assert "flash warning" in testapp.get("/").text


def test_app_built_through_configurator(ini: Path) -> None:
    example: Any = importlib.import_module("pyramid_app")  # installed: importable anywhere
    settings = get_appsettings(str(ini), "pyramid_app")
    testapp = TestApp(wrap(example.make_config(settings)))
    log_in(testapp, "bob", "bob-password")
    bounce(testapp, "bob@example.com")
    assert "We could not deliver e-mail to bob@example.com" in testapp.get("/").text
    assert "We could not deliver" not in testapp.get("/").text
    testapp.get("/account").forms["account"].submit(status=303)  # CSRF token and session work


def test_anonymous_visitors_are_sent_to_log_in(ini: Path) -> None:
    testapp = TestApp(get_app(str(ini), "main"))
    assert testapp.get("/account", status=303).headers["Location"].endswith("/login")
    assert (
        "Wrong name or password"
        in testapp.post(
            "/login",
            {"name": "ann", "password": "nope", "csrf_token": csrf(testapp)},
        ).text
    )


def csrf(testapp: TestApp[Any]) -> str:
    token: str = testapp.get("/login").forms["login"]["csrf_token"].value
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_pserve_serves_the_pipeline(ini: Path) -> None:
    """``pserve development.ini http_port=...`` as the README says: the .ini unchanged,
    no PYTHONPATH."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with subprocess.Popen(
        [str(tool("pserve")), "development.ini", f"http_port={port}"],
        cwd=ini.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as server:
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(url, server)
            # The README's command, against the real server.
            sent = subprocess.run(
                [str(tool("bounce-middleware")), "send", url + PATH, "--user", "postmark"]
                + ["--password", "s3cret", "--email", "ann@example.com"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "200 OK" in sent.stdout
        finally:
            server.terminate()
            output, _ = server.communicate(timeout=10)
    assert b"accepted -> 200" in output  # the ini's logging section is applied
    with closing(sqlite3.connect(ini.parent / "pyramid_app.sqlite3")) as db:
        rows = db.execute("SELECT user_id, email, shown_at FROM bounce_notices").fetchall()
    assert rows == [("1", "ann@example.com", None)]


def pserve_commands(text: str) -> list[str]:
    """Every ``pserve ...`` command in ``text``, its words joined by single spaces."""
    words = re.sub(r"[`#]", " ", text).split()
    commands = []
    for i, word in enumerate(words):
        if word == "pserve":
            commands.append(" ".join(words[i : i + 3]))
    return commands


def test_every_documented_pserve_command_sets_the_port() -> None:
    """The .ini fixes no port (``%(http_port)s``): ``pserve development.ini`` alone fails."""
    module = ast.parse((EXAMPLE / "pyramid_app.py").read_text())
    sources = {
        "pyramid_app.py": ast.get_docstring(module) or "",
        "README.md": (EXAMPLE / "README.md").read_text(),
        "development.ini": (EXAMPLE / "development.ini").read_text(),
    }
    for name, text in sources.items():
        assert pserve_commands(text) == ["pserve development.ini http_port=6543"], name


def tool(name: str) -> Path:
    """A console script installed next to this Python."""
    return Path(sys.executable).with_name(name)


def wait_for(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(server.communicate()[0].decode())
        try:
            with urllib.request.urlopen(url + "/login", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError("pserve did not start within 20 seconds")
