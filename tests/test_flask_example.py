"""The Flask example app, served on 127.0.0.1 and hit by ``bounce-middleware send``."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import pytest
from webtest import TestApp
from werkzeug.serving import make_server

from bounce_middleware.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flask_app.py"


@pytest.fixture(autouse=True)
def library_log_level() -> Iterator[None]:
    """The example sets the library's log level (to print its lines): undone after each test."""
    logger = logging.getLogger("bounce_middleware")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bounce_flask_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flask finds the app's root path through it
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def app(example: ModuleType, tmp_path: Path) -> flask.Flask:
    created: flask.Flask = example.create_app(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'example.sqlite3'}"}
    )
    return created


@pytest.fixture
def server(app: flask.Flask) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


def log_in(browser: TestApp[Any], name: str, password: str) -> Any:
    form = browser.get("/login").forms["page-form"]
    form["name"] = name
    form["password"] = password
    return form.submit().follow()


def notices(page: Any) -> list[str]:
    return re.findall(r'<p class="flash warning">(.*?)</p>', page.text, re.S)


def test_send_then_notice_once_then_change_address(
    app: flask.Flask, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{server}/postmark/bounce"
    args = ["send", url, "--user", "postmark", "--password", "s3cret"]
    assert cli([*args, "--email", "ann@example.com"]) == 0
    assert "200" in capsys.readouterr().out

    browser = TestApp(app)
    assert len(notices(log_in(browser, "ann", "ann-password"))) == 1
    assert notices(browser.get("/")) == []

    form = browser.get("/email").forms["page-form"]
    form["email"] = "ann@new.example.com"
    assert "Your address is now ann@new.example.com." in form.submit().follow().text
    assert cli([*args, "--email", "ann@example.com"]) == 0
    assert notices(browser.get("/")) == []


def test_wrong_password_is_refused(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["send", f"{server}/postmark/bounce", "--user", "postmark", "--password", "x"]) == 1
    assert "401" in capsys.readouterr().out


def test_pages_need_login_and_csrf(app: flask.Flask) -> None:
    browser = TestApp(app)
    assert browser.get("/email").status_int == 302
    browser.post("/logout", status=400)
    assert "Wrong name or password." in log_in_fails(browser)


def log_in_fails(browser: TestApp[Any]) -> str:
    form = browser.get("/login").forms["page-form"]
    form["name"] = "ann"
    form["password"] = "nope"
    return str(form.submit().text)


def test_flask_run_prints_the_librarys_log_lines(tmp_path: Path) -> None:
    """The README's command, ``flask --app examples/flask_app.py run``, from the repository
    root: the bounce it receives is logged in its terminal, as in the other examples."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        # Keep the example's database (by default in examples/instance/) out of the tree.
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'example.sqlite3'}",
    }
    flask_cli = Path(sys.executable).with_name("flask")
    command = [str(flask_cli), "--app", "examples/flask_app.py", "run", "--port", str(port)]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as server:
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, server.communicate()[0].decode()
                try:
                    with urllib.request.urlopen(url + "/login", timeout=2):
                        break
                except (urllib.error.URLError, ConnectionError):
                    assert time.monotonic() < deadline, "flask run did not start within 30 s"
                    time.sleep(0.1)
            args = ["send", url + "/postmark/bounce", "--user", "postmark", "--password"]
            assert cli([*args, "s3cret", "--email", "ann@example.com"]) == 0
        finally:
            server.terminate()
            output = server.communicate(timeout=10)[0].decode()
    assert re.search(r"INFO +\[bounce_middleware\] bounce postmark:\S+ .* accepted -> 200", output)
    assert "ann@example.com" not in output  # addresses never reach the logs
