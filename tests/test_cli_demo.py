"""``bounce-middleware demo`` run as a real process (stopped with a signal), and ``replay``
on the demo's database through ``--app bounce_middleware.demo:make_app``.

``tests/test_demo.py`` tests the demo site itself, in process.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware.cli import main
from bounce_middleware.cli.common import close_store
from bounce_middleware.cli.serve import new_password
from bounce_middleware.demo import BOUNCE_PATH, DEMO_PATHS, SEED_USERS, make_app
from bounce_middleware.samples.sendgrid import sample_request as sendgrid_sample
from bounce_middleware.testing import auth_headers, postmark_bounce

# Bounds every wait on another thread or process; never reached when things work.
DEADLINE = 30
AUTH = ("postmark", "a-long-demo-password")
CREDENTIAL = ":".join(AUTH)


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    url: str
    send_commands: dict[str, list[str]]  # by provider, as printed
    banner: list[str]
    db: Path

    @property
    def send_command(self) -> list[str]:
        """The first command printed: Postmark's."""
        return self.send_commands["postmark"]

    def leftovers(self) -> list[str]:
        """The files beside the database that SQLite keeps while connections are open."""
        return sorted(p.name for p in self.db.parent.glob(self.db.name + "-*"))

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
        url, commands, banner = "", dict[str, list[str]](), list[str]()
        while (line := lines.get(timeout=DEADLINE)) != "Press Ctrl-C to stop.":
            assert line is not None, process.stderr.read() if process.stderr else ""
            banner.append(line)
            if line.startswith("bounce-middleware demo: open "):
                url = line.split()[3]
            elif line.strip().startswith("bounce-middleware send "):
                command = shlex.split(line)
                provider = (
                    command[command.index("--provider") + 1] if "--provider" in command else ""
                )
                commands[provider or "postmark"] = command
        yield Demo(process, lines, url, commands, banner, tmp_path / "demo.db")
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_demo_closes_its_database_and_leaves_no_wal_files(
    demo: Demo, signum: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two processes on the file: the demo serving a webhook, and `list` reading it.
    assert main(demo.send_command[1:]) == 0
    assert "Mail to this address bounced" in demo.page()
    assert main(["list", "--store", f"sqlite:///{demo.db}"]) == 0
    assert demo.leftovers() == ["demo.db-shm", "demo.db-wal"]  # the demo still has it open

    status, rest, stderr = demo.stop(signum)  # SIGHUP: the terminal was closed

    assert status == 0, stderr
    assert rest[-1] == "bounce-middleware demo stopped. Bye!"
    assert demo.leftovers() == []
    # A read-only listing afterwards tidies up after itself too.
    assert main(["list", "--store", f"sqlite:///{demo.db}"]) == 0
    assert "ann@example.com" in capsys.readouterr().out
    assert demo.leftovers() == []


def test_demo_says_how_to_start_over_and_how_to_replay(
    demo: Demo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert f"  database  {demo.db}  (delete demo.db* to start over)" in demo.banner
    [replay] = [line for line in demo.banner if line.startswith("Replay what failed: ")]
    assert replay.endswith("bounce-middleware replay --app bounce_middleware.demo:make_app")

    # Exactly the command printed, while the demo runs.
    env, *command = shlex.split(replay.removeprefix("Replay what failed: "))
    assert env == f"BOUNCE_DEMO_DB={demo.db}"
    monkeypatch.setenv("BOUNCE_DEMO_DB", str(demo.db))
    assert main(command[1:]) == 0
    assert capsys.readouterr().out == "nothing to replay: every recorded bounce is finished\n"


def test_replay_app_for_the_demo_finds_its_database_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOUNCE_DEMO_DB", raising=False)
    site = make_app("bounce-demo.sqlite3", credentials=[CREDENTIAL])
    TestApp(site).post_json(
        BOUNCE_PATH, postmark_bounce(email="ann@example.com"), headers=auth_headers(*AUTH)
    )
    close_store(site.store)

    assert main(["replay", "--app", "bounce_middleware.demo:make_app"]) == 0
    assert capsys.readouterr().out == "nothing to replay: every recorded bounce is finished\n"
    assert main(["replay", "--app", "bounce_middleware.demo:make_app", "--dry-run"]) == 0


def test_replay_app_for_the_demo_without_its_database_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOUNCE_DEMO_DB", raising=False)

    assert main(["replay", "--app", "bounce_middleware.demo:make_app"]) == 2

    assert capsys.readouterr().err == (
        "bounce-middleware replay: error: --app bounce_middleware.demo:make_app: calling "
        "make_app() failed: ConfigurationError: no demo database at bounce-demo.sqlite3: run "
        "`bounce-middleware demo` in this directory first, or set BOUNCE_DEMO_DB to the file "
        "its --db named\n"
    )
    assert list(tmp_path.iterdir()) == []  # and no empty database made by mistake


def test_replay_app_for_the_demo_resolves_a_rejected_request_and_flags_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "elsewhere.sqlite3"
    monkeypatch.setenv("BOUNCE_DEMO_DB", str(db))
    site = make_app(db, credentials=[CREDENTIAL])
    assert site.store is not None
    body = json.dumps(postmark_bounce(email="ann@example.com")).encode()
    key = site.store.reject("postmark", body, "field Email is missing")  # an older parser's 400
    close_store(site.store)

    assert main(["replay", "--app", "bounce_middleware.demo:make_app"]) == 0

    assert f"{key} (rejected " in capsys.readouterr().out
    site = make_app(db, credentials=[CREDENTIAL])
    page = TestApp(site).get("/").text
    assert "Mail to this address bounced (hard," in page.split("<h2>")[0]
    close_store(site.store)


def test_the_demo_password_never_reads_as_an_option() -> None:
    # One in 64 used to start with "-": the printed `send --password -x...` then failed.
    passwords = [new_password() for _ in range(2000)]

    assert not [p for p in passwords if p.startswith("-")]
    assert {len(p) for p in passwords} == {16}


# -- every provider -----------------------------------------------------------------------------

PROVIDERS = list(DEMO_PATHS)  # the nine, Postmark first


def test_the_demo_prints_a_route_per_provider_and_a_command_for_each(demo: Demo) -> None:
    start = demo.banner.index("Webhook routes, one per provider:")
    routes = [line.split() for line in demo.banner[start + 1 : start + 1 + len(PROVIDERS)]]

    assert [(route[0], route[1]) for route in routes] == [
        (name, demo.url.rstrip("/") + path) for name, path in DEMO_PATHS.items()
    ]
    assert list(demo.send_commands) == PROVIDERS
    for name, command in demo.send_commands.items():
        assert command[2] == demo.url.rstrip("/") + DEMO_PATHS[name]


def test_each_printed_command_is_accepted_and_flags_its_own_user(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in PROVIDERS:
        # Exactly the commands the demo printed.
        assert main(demo.send_commands[name][1:]) == 0, capsys.readouterr()
        assert capsys.readouterr().out.splitlines()[1:] == ["200 OK", "accepted"]

    page = demo.page()
    for name, (_, email) in zip(PROVIDERS, SEED_USERS, strict=True):
        assert "Mail to this address bounced (hard," in row_of(page, email), name
    assert main(["list", "--store", f"sqlite:///{demo.db}", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(record["provider"] for record in listed) == sorted(PROVIDERS)
    assert all(record["finished"] for record in listed)

    status, _, stderr = demo.stop(signal.SIGTERM)
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.count("accepted -> 200") == len(PROVIDERS)
    password = demo.send_commands["postmark"][-3]
    signing_key = demo.send_commands["mailgun"][-3]
    assert password not in stderr
    assert signing_key not in stderr


@pytest.mark.parametrize(
    ("provider", "change", "advice"),
    [
        ("mailgun", ("--secret", "key-that-is-not-the-demos"), "--secret (or BOUNCE_SECRET) must"),
        ("postmark", ("--password", "not-the-demos-password"), "refused these credentials"),
    ],
)
def test_another_secret_against_the_demo_is_401_with_the_advice(
    demo: Demo,
    provider: str,
    change: tuple[str, str],
    advice: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = list(demo.send_commands[provider])
    option, value = change
    command[command.index(option) + 1] = value

    assert main(command[1:]) == 1

    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "401 Unauthorized"
    assert advice in lines[3]
    assert "Mail to this address bounced" not in demo.page()


def test_a_sample_sent_to_another_providers_route_is_refused(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    sendgrid = demo.send_commands["sendgrid"]
    mailgun_url = demo.url.rstrip("/") + DEMO_PATHS["mailgun"]

    assert main(["send", mailgun_url, *sendgrid[3:]]) == 1

    assert capsys.readouterr().out.splitlines()[1] == "401 Unauthorized"
    assert "Mail to this address bounced" not in demo.page()


def test_replay_app_for_the_demo_resolves_a_rejected_request_of_a_signed_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `replay --app bounce_middleware.demo:make_app` builds every route, so it finds the
    # provider of every record: here one SendGrid request an older parser refused.
    db = tmp_path / "demo.sqlite3"
    monkeypatch.setenv("BOUNCE_DEMO_DB", str(db))
    site = make_app(db, credentials=[CREDENTIAL])
    assert site.store is not None
    _, body = sendgrid_sample("hard", email="bob@example.com")
    key = site.store.reject("sendgrid", body, "an older parser's refusal")
    close_store(site.store)

    assert main(["replay", "--app", "bounce_middleware.demo:make_app"]) == 0

    out = capsys.readouterr().out
    assert f"{key} (rejected " in out
    assert "sendgrid:" in out
    site = make_app(db, credentials=[CREDENTIAL])
    page = TestApp(site).get("/").text
    assert "Mail to this address bounced (hard," in row_of(page, "bob@example.com")
    close_store(site.store)
