"""The FastAPI example under a real uvicorn server: a signed Postmark bounce, the notice once."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bounce_middleware.testing import auth_headers, postmark_bounce

ROOT = Path(__file__).resolve().parent.parent
NOTICE = "We could not deliver e-mail to ann@example.com"


@dataclass
class Server:
    port: int
    log: Path

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            text = response.read().decode("utf-8")
            return response.status, {k.lower(): v for k, v in response.getheaders()}, text
        finally:
            conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    # The test binds the port and hands the socket over: no race for a free port.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "BOUNCE_EXAMPLE_DB": str(tmp_path / "example.sqlite3"),
        "BOUNCE_POSTMARK_CREDENTIALS": "postmark:example-test-password-long",
        "BOUNCE_EXAMPLE_SECRET": "example-test-session-secret",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "main:app",
        "--app-dir",
        str(ROOT / "examples" / "fastapi_app"),
        f"--fd={listener.fileno()}",
        "--log-level=info",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, pass_fds=[listener.fileno()], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    listener.close()
    running = Server(port, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if running.request("GET", "/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def test_a_signed_bounce_shows_the_notice_once(server: Server) -> None:
    body = json.dumps(postmark_bounce(email="ann@example.com")).encode()
    headers = {
        **auth_headers("postmark", "example-test-password-long"),
        "Content-Type": "application/json",
    }
    assert server.request("POST", "/postmark/bounce", body, headers)[::2] == (200, "accepted\n")
    assert server.request("POST", "/postmark/bounce", body, headers)[2] == "already processed\n"
    wrong = {**headers, **auth_headers("postmark", "wrong")}
    assert server.request("POST", "/postmark/bounce", body, wrong)[0] == 401

    form = urlencode({"name": "ann", "password": "ann-password"}).encode()
    status, answer, _ = server.request(
        "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 303
    cookie = {"Cookie": answer["set-cookie"].split(";")[0]}
    first = server.request("GET", "/", headers=cookie)[2]
    second = server.request("GET", "/", headers=cookie)[2]
    assert NOTICE in first and "Logged in as ann" in first
    assert NOTICE not in second and "Logged in as ann" in second

    log = server.log.read_text()
    assert "type=HardBounce kind=hard accepted -> 200" in log
    assert "ann@example.com" not in log  # the library never logs addresses


def test_the_password_check_runs_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PBKDF2 takes ~150 ms: on the loop, every other request would wait for it.
    import asyncio
    import importlib.util
    import threading

    import httpx

    monkeypatch.setenv("BOUNCE_EXAMPLE_DB", str(tmp_path / "example.sqlite3"))
    path = ROOT / "examples" / "fastapi_app" / "main.py"
    spec = importlib.util.spec_from_file_location("fastapi_example_for_threads", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    # SQLAlchemy resolves the models' annotations through sys.modules.
    monkeypatch.setitem(sys.modules, spec.name, example)
    spec.loader.exec_module(example)
    checked_in: list[int] = []
    real_check = example.check_password

    def check_password(stored: str, password: str) -> bool:
        checked_in.append(threading.get_ident())
        return bool(real_check(stored, password))

    monkeypatch.setattr(example, "check_password", check_password)

    async def log_in() -> int:
        transport = httpx.ASGITransport(app=example.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post("/login", data={"name": "ann", "password": "ann-password"})
        return answer.status_code

    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    assert asyncio.run(log_in()) == 303
    assert len(checked_in) == 1 and checked_in[0] != loop_thread
