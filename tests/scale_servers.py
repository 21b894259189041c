"""Independent gunicorn servers standing for several hosts, and a provider that retries.

:func:`gunicorn` starts one server: its own master in its own process group
(so :meth:`Gunicorn.kill` ends the master and its workers at once, with
SIGKILL, as a host lost to a power cut), on a loopback port it binds itself.
:class:`Provider` delivers webhook bodies as an e-mail provider behind a load
balancer does: each delivery is retried, with backoff, on the next server,
until it is answered 2xx; connections are kept alive between deliveries.
``tests/test_scale_servers.py`` and ``benchmarks/postgres_http.py`` use both.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.scale_app import PASSWORD, PATH, USER

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Gunicorn:
    """A running gunicorn master (``process``) and the workers it forked."""

    name: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The process ids of the master's live children (its workers)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def kill(self) -> list[int]:
        """SIGKILL the master and every worker at once; the workers' ids, all gone when
        this returns."""
        workers = self.workers()
        # start_new_session: the master's pid is its process group's id, its workers' too.
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a killed server's worker is still running"
            time.sleep(0.05)
        return workers

    def stop(self) -> None:
        """Stop it as an administrator does (a no-op once killed)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def _alive(pid: int) -> bool:
    """Running: neither gone nor a zombie (a container's init may be slow to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def start(
    name: str,
    app: str,
    env: Mapping[str, str],
    workdir: Path,
    *,
    workers: int = 2,
    threads: int = 4,
    preload: bool = False,
) -> Gunicorn:
    """Start gunicorn (gthread workers) serving ``app`` with ``env`` added; not yet ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = int(listener.getsockname()[1])
    log = workdir / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        f"--bind=fd://{listener.fileno()}",
        f"--workers={workers}",
        "--worker-class=gthread",
        f"--threads={threads}",
        # Longer than the client's pauses between deliveries on one connection.
        "--keep-alive=30",
        f"--chdir={ROOT}",
        "--log-level=warning",
        "--graceful-timeout=5",
        *(["--preload"] if preload else []),
        app,
    ]
    full_env = {
        **os.environ,
        **env,
        "BOUNCE_SERVER": name,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            pass_fds=[listener.fileno()],
            env=full_env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    listener.close()
    return Gunicorn(name, port, process, log)


def wait_until_ready(server: Gunicorn, timeout: float = 60.0) -> None:
    """Wait until the server answers the application's page with 200."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn {server.name} exited: {server.log.read_text()}")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn {server.name} not ready after {timeout}s")
        time.sleep(0.1)


@contextmanager
def running(
    names: Sequence[str], app: str, env: Mapping[str, str], workdir: Path, **options: object
) -> Iterator[list[Gunicorn]]:
    """One server per name, started together; all stopped afterwards."""
    servers: list[Gunicorn] = []
    try:
        for name in names:
            servers.append(start(name, app, env, workdir, **options))  # type: ignore[arg-type]
        for server in servers:
            wait_until_ready(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


# -- the provider --------------------------------------------------------------

_HEADERS = {
    "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    "Content-Type": "application/json",
}


@dataclass(frozen=True)
class Attempt:
    """One POST: the server tried, its status (0: no answer), when and how long it took."""

    server: int
    status: int
    started: float
    seconds: float


class Provider:
    """Delivers bodies to ``ports`` as a provider behind a load balancer does.

    :meth:`deliver` tries the server it is given, then, after each answer that
    is not 2xx or each connection error, waits (``backoff`` doubling up to
    ``max_backoff``) and tries the next server, until a 2xx or ``patience``
    seconds. Each thread keeps one connection per server alive.
    """

    def __init__(
        self,
        ports: Sequence[int],
        *,
        backoff: float = 0.02,
        max_backoff: float = 0.5,
        patience: float = 180.0,
        timeout: float = 30.0,
    ) -> None:
        self.ports = list(ports)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.patience = patience
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[http.client.HTTPConnection] = []

    def deliver(self, body: bytes, server: int) -> list[Attempt]:
        """Deliver one body until it is accepted; every attempt, the last one 2xx unless
        the provider's patience ran out."""
        attempts: list[Attempt] = []
        deadline = time.monotonic() + self.patience
        pause = self.backoff
        while True:
            attempts.append(self.post(body, server))
            if 200 <= attempts[-1].status < 300 or time.monotonic() > deadline:
                return attempts
            time.sleep(pause)
            pause = min(pause * 2, self.max_backoff)
            server = (server + 1) % len(self.ports)

    def post(self, body: bytes, server: int) -> Attempt:
        """One POST to server number ``server``, on this thread's kept-alive connection."""
        kept: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault("kept", {})
        started = time.perf_counter()
        conn = kept.pop(server, None)
        reused = conn is not None
        while True:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.ports[server], self.timeout)
                with self._lock:
                    self._opened.append(conn)
            try:
                conn.request("POST", PATH, body=body, headers=_HEADERS)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                # A kept-alive connection the server had closed: once more on a new one.
                if reused and isinstance(exc, _STALE):
                    reused = False
                    continue
                return Attempt(server, 0, started, time.perf_counter() - started)
            if response.will_close:
                conn.close()
            else:
                kept[server] = conn
            return Attempt(server, response.status, started, time.perf_counter() - started)

    def close(self) -> None:
        """Close every connection any thread opened (once no thread delivers any more)."""
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
