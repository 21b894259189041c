"""A real Redis server for the Celery tests: a broker on a free loopback port.

The server is the distribution's ``redis-server`` (Debian's ``redis-server``
package, which ``.ci/run`` installs when it is missing), run without
persistence (``--save ''``, no append-only file) from a temporary directory.
Root may run it, but as root it runs as ``redis`` (or ``nobody``), as a
service would. :meth:`RedisServer.stop` and :meth:`RedisServer.start` let a
test take the broker away and bring it back on the same port.
``BOUNCE_TEST_REDIS_URL`` points the tests at a server of your own instead (the
stop/start tests then still need a server of their own, which they start).

Nothing here skips: without ``redis-server`` the tests fail, saying how to install it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

INSTALL_HINT = "redis-server is needed for these tests: apt-get install redis-server"
URL_VARIABLE = "BOUNCE_TEST_REDIS_URL"


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _demote() -> tuple[Callable[[], None] | None, int | None]:
    if os.geteuid() != 0:
        return None, None
    for name in ("redis", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue

        def demote(user: pwd.struct_passwd = user) -> None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return demote, user.pw_uid
    return None, None


class RedisServer:
    """``redis-server`` on ``127.0.0.1:port``: :attr:`url` for Celery's broker."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="bounce-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers."""
        if self.process is not None and self.process.poll() is None:
            return
        demote, uid = _demote()
        if uid is not None:
            os.chown(self.directory, uid, -1)
        with open(self.directory / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--protected-mode",
                    "yes",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=demote,  # noqa: PLW1509 - no threads hold locks here
            )
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop the server at once (SIGKILL: a broker that goes away, with what it held)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def ping(self) -> bool:
        """True when the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 30
        while not self.ping():
            if self.process is not None and self.process.poll() is not None:
                log = (self.directory / "server.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited at start-up:\n{log}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer within 30 s")
            time.sleep(0.05)

    def queued(self, queue: str = "celery") -> int:
        """How many messages wait in ``queue`` (Redis's list of that name)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            name = queue.encode()
            sock.sendall(b"*2\r\n$4\r\nLLEN\r\n$%d\r\n%s\r\n" % (len(name), name))
            reply = sock.recv(64)
        return int(reply[1:].split(b"\r\n")[0])
