"""The ``bounce-middleware`` command: ``send`` to a real server, ``list`` and ``replay`` on a
real SQLite store, and ``demo`` run as a real process and stopped with a signal."""

from __future__ import annotations

import importlib
import json
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from webtest import TestApp
from webtest.http import StopableWSGIServer

from bounce_middleware import Bounce, BounceKind, BounceMiddleware, MemoryStore
from bounce_middleware.cli import main
from bounce_middleware.testing import auth_headers, postmark_bounce

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "s3cret:with@odd/chars"
# Bounds every wait on another thread or process; never reached when things work.
DEADLINE = 30


def not_found(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


# -- send ------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    received: list[Bounce] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    """A BounceMiddleware with a MemoryStore, served by waitress on 127.0.0.1."""
    received: list[Bounce] = []
    app = BounceMiddleware(
        not_found,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[received.append],
        store=MemoryStore(),
    )
    # Port 0: the system picks a free port; the socket listens once create() returns.
    http_server = StopableWSGIServer.create(app, host="127.0.0.1", port=0)
    try:
        port = http_server.getsockname()[1]
        yield Server(f"http://127.0.0.1:{port}{PATH}", received)
    finally:
        http_server.shutdown()


def test_send_posts_a_bounce_and_prints_the_answer(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["send", server.url, "--user", USER, "--password", PASSWORD, "--email", "ann@example.com"]
    )

    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[1:] == ["200 OK", "accepted"]
    assert f"POST {server.url}" in out
    [bounce] = server.received
    assert (bounce.email, bounce.kind, bounce.type) == (
        "ann@example.com",
        BounceKind.HARD,
        "HardBounce",
    )


def test_send_with_a_wrong_password_prints_401_and_exits_1(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["send", server.url, "--user", USER, "--password", "wrong"])

    out = capsys.readouterr().out
    assert status == 1
    assert "401 Unauthorized" in out
    assert "wrong" not in out
    assert server.received == []


def test_send_takes_credentials_from_the_url_as_postmark_does(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    userinfo = f"{USER}:{urllib.parse.quote(PASSWORD, safe='')}@"
    url = server.url.replace("http://", "http://" + userinfo)

    status = main(["send", url])

    captured = capsys.readouterr()
    assert status == 0, captured
    assert len(server.received) == 1
    assert "s3cret" not in captured.out  # the printed URL has no credentials


def test_send_percent_encodes_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(environ["PATH_INFO"])
        return not_found(environ, start_response)

    http_server = StopableWSGIServer.create(app, host="127.0.0.1", port=0)
    try:
        url = f"http://u:p@127.0.0.1:{http_server.getsockname()[1]}/pöst mark/bounce?a=1"
        assert main(["send", url]) == 1
    finally:
        http_server.shutdown()

    assert "404 Not Found" in capsys.readouterr().out
    assert seen == ["/pöst mark/bounce".encode().decode("latin-1")]  # PEP 3333's str of bytes


def test_send_takes_the_password_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOUNCE_PASSWORD", PASSWORD)

    assert main(["send", server.url, "--user", USER]) == 0
    assert len(server.received) == 1


def test_send_one_id_twice_is_a_redelivery(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", server.url, "--user", USER, "--password", PASSWORD, "--id", "42"]

    assert main(argv) == 0
    assert main(argv) == 0

    assert capsys.readouterr().out.splitlines()[-1] == "already processed"
    assert len(server.received) == 1


def test_each_send_is_a_new_event(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["send", server.url, "--user", USER, "--password", PASSWORD]

    assert main(argv) == 0
    assert main(argv) == 0

    assert len({bounce.key for bounce in server.received}) == 2


@pytest.mark.parametrize(
    ("options", "status", "answer", "kind"),
    [
        (["--type", "SoftBounce"], 0, "accepted", BounceKind.SOFT),
        (["--record-type", "SpamComplaint"], 0, "accepted", BounceKind.COMPLAINT),
        (["--record-type", "SubscriptionChange"], 0, "accepted", BounceKind.HARD),
        (["--record-type", "Legacy", "--type", "Transient"], 0, "accepted", BounceKind.SOFT),
        (["--record-type", "Delivery"], 0, "ignored", None),
        (["--record-type", "Inbound"], 1, "inbound e-mail", None),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_send_record_shapes(
    server: Server,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    status: int,
    answer: str,
    kind: BounceKind | None,
) -> None:
    argv = ["send", server.url, "--user", USER, "--password", PASSWORD, "--email", "b@example.com"]

    assert main([*argv, *options]) == status

    assert answer in capsys.readouterr().out
    assert [(b.kind, b.email) for b in server.received] == (
        [(kind, "b@example.com")] if kind else []
    )


def test_send_to_a_closed_port_says_no_server_is_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Bound but not listening: the port stays ours and every connection is refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://{USER}:secret-in-url@127.0.0.1:{sock.getsockname()[1]}{PATH}"

        status = main(["send", url])

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("bounce-middleware send: error: connection refused: no server is running")
    assert url.replace(f"{USER}:secret-in-url@", "") in err
    assert "secret-in-url" not in err
    assert "Traceback" not in err


def test_send_to_a_server_that_never_answers_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # the kernel accepts the connection; nobody ever answers
        url = f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"

        status = main(["send", url, "--user", "u", "--password", "p", "--timeout", "0.2"])

    assert status == 2
    assert "no answer from" in capsys.readouterr().err


def test_send_to_something_that_is_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.settimeout(DEADLINE)

        def hang_up() -> None:
            connection, _ = sock.accept()
            connection.recv(1024)
            connection.close()

        peer = threading.Thread(target=hang_up)
        peer.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"
        status = main(["send", url, "--user", "u", "--password", "p"])
        peer.join(DEADLINE)

    assert status == 2
    assert "did not answer with HTTP" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["send", "http://127.0.0.1:9/x", "--user", "u"], "no password"),
        (["send", "http://127.0.0.1:9/x", "--password", "p"], "no user name"),
        (["send", "ftp://u:p@127.0.0.1/x"], "URL must look like"),
        (["send", "http://u:p@127.0.0.1:99999/x"], "port"),
        (["send", "http://u:p@h/x", "--record-type", "Delivery", "--type", "HardBounce"], "--type"),
        (["send", "http://u:p@h/x", "--record-type", "Open", "--id", "3"], "--id"),
        (["send", "http://u:p@h/x", "--timeout", "0"], "--timeout"),
        (["send", "http://u:p@h/x", "--type", "NoSuchType"], "invalid choice"),
        (["list"], "no store"),
        (["list", "--store", "sqlite:///no/such/file.sqlite3"], "no store file"),
        (["list", "--store", "postgres://db/x"], "unsupported store URL"),
        (["list", "--store", "memory://", "--limit", "-1"], "expected 0 or more"),
        (["replay", "--store", "memory://", "--app", "no_such_module:app"], "cannot import"),
        (["replay", "--store", "memory://", "--app", "tests.test_cli:not_found"], "no Bounce"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("BOUNCE_USER", "BOUNCE_PASSWORD", "BOUNCE_STORE"):
        monkeypatch.delenv(name, raising=False)

    assert main(argv) == 2

    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--help"]) == 0
    assert "BOUNCE_PASSWORD" in capsys.readouterr().out


# -- list and replay -------------------------------------------------------------------------

APP_MODULE = """
from pathlib import Path

from bounce_middleware import BounceMiddleware
from bounce_middleware.sqlite_store import SQLiteStore

CALLS = Path({calls!r})
BROKEN = Path({broken!r})


def steady(bounce):
    with CALLS.open("a") as calls:
        calls.write(f"steady {{bounce.key}}\\n")


def flaky(bounce):
    if BROKEN.exists():
        raise RuntimeError("the mail server is down")
    with CALLS.open("a") as calls:
        calls.write(f"flaky {{bounce.key}}\\n")


def site(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the site"]


class Outer:
    # Some other middleware around ours: replay finds BounceMiddleware through `.app`.
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def create_app():
    middleware = BounceMiddleware(
        site, path={path!r}, credentials=["{user}:{password}"], store=SQLiteStore({db!r})
    )
    middleware.add_handler(steady, name="steady")
    middleware.add_handler(flaky, name="flaky")
    return Outer(middleware)
"""


@dataclass
class Project:
    """An application module on sys.path, its SQLite store and its handlers' call log."""

    module: ModuleType
    store_url: str
    calls: Path
    broken: Path

    @property
    def spec(self) -> str:
        return f"{self.module.__name__}:create_app"

    def calls_made(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    db, calls, broken = tmp_path / "bounces.sqlite3", tmp_path / "calls", tmp_path / "broken"
    name = "replay_app_for_cli_tests"
    (tmp_path / f"{name}.py").write_text(
        APP_MODULE.format(
            calls=str(calls), broken=str(broken), db=str(db), path=PATH, user=USER, password="pw"
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module(name)
    yield Project(module, f"sqlite:///{db}", calls, broken)
    sys.modules.pop(name, None)


def deliver(project: Project, status: int, **fields: Any) -> str:
    app = TestApp(project.module.create_app())
    payload = postmark_bounce(**fields)
    app.post_json(PATH, payload, headers=auth_headers(USER, "pw"), status=status)
    return f"postmark:{payload['ID']}"


def test_list_shows_recorded_bounces_newest_first(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    done = deliver(project, 200, email="ann@example.com")
    project.broken.touch()
    pending = deliver(project, 500, type="SoftBounce", email="bob@example.com")

    assert main(["list", "--store", project.store_url]) == 0

    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "RECEIVED", "KIND", "TYPE", "EMAIL", "STATE", "TRIES", "KEY", "COMPLETED", "HANDLERS"
    ]  # fmt: skip
    bob = ["soft", "SoftBounce", "bob@example.com", "pending", "1", pending, "steady"]
    ann = ["hard", "HardBounce", "ann@example.com", "done", "1", done, "flaky,", "steady"]
    assert first.split()[2:] == bob  # after the date and time
    assert second.split()[2:] == ann


def test_list_filters_and_json(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    deliver(project, 200, email="ann@example.com")
    deliver(project, 200, type="SoftBounce", email="Bob@Example.com")
    capsys.readouterr()

    def listing(*options: str) -> list[dict[str, Any]]:
        assert main(["list", "--store", project.store_url, "--json", *options]) == 0
        result: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
        return result

    assert [r["email"] for r in listing()] == ["Bob@Example.com", "ann@example.com"]
    assert [r["email"] for r in listing("--kind", "hard")] == ["ann@example.com"]
    assert [r["email"] for r in listing("--email", "bob@example.com")] == ["Bob@Example.com"]
    assert listing("--unfinished") == []
    [newest] = listing("--limit", "1")
    assert newest["completed"] == ["flaky", "steady"]
    assert newest["finished"] is True
    assert main(["list", "--store", project.store_url, "--limit", "1"]) == 0
    assert "(the newest 1 shown; --limit 0 shows all)" in capsys.readouterr().out
    assert main(["list", "--store", project.store_url, "--kind", "complaint"]) == 0
    assert capsys.readouterr().out == "no recorded bounces match\n"


def test_replay_completes_only_the_handlers_that_failed(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    done = deliver(project, 200, email="ann@example.com")
    project.broken.touch()
    pending = deliver(project, 500, email="bob@example.com")
    assert project.calls_made() == [f"steady {done}", f"flaky {done}", f"steady {pending}"]
    replay = ["replay", "--store", project.store_url, "--app", project.spec]

    # Still broken: the replay fails again and says so.
    assert main(replay) == 1
    out = capsys.readouterr().out
    assert f"{pending} HardBounce bob@example.com: ran flaky -> 500" in out
    assert "0 ok, 1 failed" in out

    project.broken.unlink()
    assert main([*replay, "--dry-run"]) == 0
    assert f"{pending} HardBounce bob@example.com: would run flaky" in capsys.readouterr().out
    assert project.calls_made() == [f"steady {done}", f"flaky {done}", f"steady {pending}"]

    assert main(replay) == 0
    out = capsys.readouterr().out
    assert f"{pending} HardBounce bob@example.com: ran flaky -> 200 accepted" in out
    assert "replayed 1 event(s): 1 ok, 0 failed" in out
    assert project.calls_made() == [
        f"steady {done}",
        f"flaky {done}",
        f"steady {pending}",
        f"flaky {pending}",
    ]

    assert main(replay) == 0
    assert capsys.readouterr().out == "nothing to replay: every recorded bounce is finished\n"
    # And the provider's own redelivery, should it still come, runs nothing.
    app = TestApp(project.module.create_app())
    bob = postmark_bounce(ID=int(pending.split(":")[1]), email="bob@example.com")
    app.post_json(PATH, bob, headers=auth_headers(USER, "pw"), status=200)
    assert len(project.calls_made()) == 4


def test_replay_uses_the_middlewares_own_store_without_store(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    project.broken.touch()
    pending = deliver(project, 500)
    project.broken.unlink()

    assert main(["replay", "--app", f"{project.module.__name__}.create_app"]) == 0

    assert f"{pending} HardBounce john@example.com: ran flaky -> 200" in capsys.readouterr().out


# -- demo ------------------------------------------------------------------------------------


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    url: str
    send_command: list[str]

    def page(self) -> str:
        with urllib.request.urlopen(self.url, timeout=DEADLINE) as response:
            assert response.status == 200
            text: str = response.read().decode("utf-8")
            return text

    def stop(self, signum: int) -> tuple[int, list[str], str]:
        self.process.send_signal(signum)
        status = self.process.wait(DEADLINE)
        rest = []
        while (line := self.lines.get(timeout=DEADLINE)) is not None:
            rest.append(line)
        assert self.process.stderr is not None
        return status, rest, self.process.stderr.read()


def row_of(page: str, email: str) -> str:
    """The row of the users table (the page's first) showing ``email``."""
    users = page.split("<h2>")[0]
    [row] = [row for row in users.split("<tr>") if f"<td>{email}</td>" in row]
    return row


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """``bounce-middleware demo`` in a subprocess on a free port, stopped however the test ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bounce_middleware.cli", "demo", "--port", "0", "--db", "demo.db"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        url, command = "", list[str]()
        while (line := lines.get(timeout=DEADLINE)) != "Press Ctrl-C to stop.":
            assert line is not None, process.stderr.read() if process.stderr else ""
            if line.startswith("bounce-middleware demo: open "):
                url = line.split()[3]
            elif line.strip().startswith("bounce-middleware send "):
                command = shlex.split(line)
        yield Demo(process, lines, url, command)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(DEADLINE)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_demo_flags_a_user_and_the_notice_goes_with_a_new_address(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.url.startswith("http://127.0.0.1:")
    assert "Mail to this address bounced" not in demo.page()

    # Exactly the command the demo printed.
    assert demo.send_command[:2] == ["bounce-middleware", "send"]
    assert main(demo.send_command[1:]) == 0
    assert "200 OK" in capsys.readouterr().out

    page = demo.page()
    assert "Mail to this address bounced (hard," in row_of(page, "ann@example.com")
    assert "Hard bounce" not in row_of(page, "bob@example.com")
    assert "bounced" not in row_of(page, "bob@example.com")

    form = urllib.parse.urlencode({"email": "ann@new.example.com"}).encode()
    request = urllib.request.Request(demo.url + "users/1/email", data=form, method="POST")
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:  # follows the 303
        page = response.read().decode("utf-8")
    assert "bounced" not in row_of(page, "ann@new.example.com")
    assert "<td>ann@example.com</td>" not in page.split("<h2>")[0]

    status, rest, stderr = demo.stop(signal.SIGINT)
    assert status == 0, stderr
    assert rest[-1] == "bounce-middleware demo stopped. Bye!"
    assert "Traceback" not in stderr
    assert "accepted -> 200" in stderr  # the middleware's log line, without the address
    assert "ann@example.com" not in stderr


def test_demo_stops_cleanly_on_sigterm(demo: Demo) -> None:
    status, rest, stderr = demo.stop(signal.SIGTERM)

    assert status == 0, stderr
    assert rest[-1] == "bounce-middleware demo stopped. Bye!"
    assert "Traceback" not in stderr


def test_demo_without_waitress_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What an absent package looks like to the import system.
    for name in [name for name in sys.modules if name.split(".")[0] == "waitress"] + ["waitress"]:
        monkeypatch.setitem(sys.modules, name, None)

    assert main(["demo", "--port", "0", "--db", str(tmp_path / "demo.db")]) == 2

    assert 'pip install "bounce-middleware[demo]"' in capsys.readouterr().err
    assert not (tmp_path / "demo.db").exists()


def test_demo_on_a_busy_port_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        assert main(["demo", "--port", str(port), "--db", str(tmp_path / "demo.db")]) == 2

    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err
