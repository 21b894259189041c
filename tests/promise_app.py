"""A real server for the store's promises: the WSGI app, its gunicorn launcher and a client.

``tests/test_promises.py`` and ``benchmarks/store_load.py`` share this module.
:func:`serve` starts gunicorn (several worker processes, all sharing one
:class:`~bounce_middleware.sqlite_store.SQLiteStore` file) on a loopback port
and stops it afterwards. The handlers append one row per application to a
second SQLite file, the *ledger*, so a test can count how often each handler
really ran for each event, whatever process ran it.

Handlers, run in this order: ``apply`` and ``notify`` always succeed
(``apply`` first sleeps ``BOUNCE_SLOW_SECONDS`` for addresses starting with
``slow``, so duplicates overlap); ``flaky`` raises the first time it sees an
event whose address starts with ``flaky``, and kills its worker process the
first time it sees one starting with ``crash``.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bounce_middleware import Bounce, BounceMiddleware, open_store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ROOT = Path(__file__).resolve().parent.parent
PATH = "/postmark/bounce"
# Long and unpublished: the server logs no weak-credential warning.
USER, PASSWORD = "postmark", "promise-tests-webhook-password"
#: The handlers' names, as the store records them.
HANDLERS = ("tests.promise_app.apply", "tests.promise_app.notify", "tests.promise_app.flaky")

_local = threading.local()


def _ledger() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "ledger", None)
    if conn is None:
        conn = sqlite3.connect(os.environ["BOUNCE_LEDGER"], timeout=30, isolation_level=None)
        # As the store does; with FULL, the ledger's fsyncs would be what a benchmark measures.
        conn.execute("PRAGMA synchronous = NORMAL")
        _local.ledger = conn
    return conn


def _write(table: str, bounce: Bounce, handler: str) -> None:
    _ledger().execute(
        f"INSERT INTO {table} (key, handler, pid) VALUES (?, ?, ?)",
        (bounce.key, handler, os.getpid()),
    )


def apply(bounce: Bounce) -> None:
    """The application's main effect: flag the address (here: one ledger row)."""
    if bounce.email.startswith("slow"):
        time.sleep(float(os.environ.get("BOUNCE_SLOW_SECONDS", "0.3")))
    _write("applied", bounce, "apply")


def notify(bounce: Bounce) -> None:
    """A second effect, to show it is not repeated when another handler failed."""
    _write("applied", bounce, "notify")


def flaky(bounce: Bounce) -> None:
    """Fails on its first attempt at a ``flaky...`` address, as if a service were down;
    kills its own worker process on its first attempt at a ``crash...`` address."""
    if bounce.email.startswith(("flaky", "crash")):
        seen = _ledger().execute("SELECT 1 FROM attempts WHERE key = ?", (bounce.key,)).fetchone()
        if seen is None:
            _write("attempts", bounce, "flaky")
            if bounce.email.startswith("crash"):
                # What the OOM killer does: no exception, no cleanup, the claim stays taken.
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the mail service is down (first attempt)")
    _write("applied", bounce, "flaky")


def _root(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application\n"]


def create_app() -> WSGIApplication:
    """The WSGI app gunicorn serves (``tests.promise_app:create_app()``), configured by env.

    ``BOUNCE_STORE_URL`` is the store's URL, ``BOUNCE_LEDGER`` the ledger file,
    ``BOUNCE_LEASE_SECONDS`` the middleware's ``lease_seconds``.
    """
    store = open_store(os.environ["BOUNCE_STORE_URL"])
    check = getattr(store, "check", None)
    if check is not None:
        # With --preload this opens a connection in the master before it forks the workers.
        check()
    return BounceMiddleware(
        _root,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[apply, notify, flaky],
        store=store,
        retry_after=1,
        lease_seconds=float(os.environ.get("BOUNCE_LEASE_SECONDS", "300")),
    )


def create_ledger(path: Path) -> None:
    """Create the ledger file if needed (before the workers start, so they never race to)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for table in ("applied", "attempts"):
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key TEXT NOT NULL, handler TEXT, pid INTEGER)"
            )
    finally:
        conn.close()


def applications(ledger: Path) -> Counter[tuple[str, str]]:
    """How many times each (event key, handler) was applied, over every worker."""
    conn = sqlite3.connect(ledger, timeout=30)
    try:
        return Counter(conn.execute("SELECT key, handler FROM applied").fetchall())
    finally:
        conn.close()


# -- the client --------------------------------------------------------------

_AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: the status (0 when the connection failed) and how long it took."""

    status: int
    seconds: float
    retry_after: str | None = None


def post(url: str, body: bytes, *, timeout: float = 30.0) -> Answer:
    """POST one webhook body as Postmark would, on a connection of its own."""
    host, port = url.removeprefix("http://").split(":")
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(
            "POST",
            PATH,
            body=body,
            headers={"Authorization": _AUTH, "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return Answer(
            response.status, time.perf_counter() - start, response.getheader("Retry-After")
        )
    except OSError:
        return Answer(0, time.perf_counter() - start)
    finally:
        conn.close()


def post_all(url: str, bodies: list[bytes], *, concurrency: int) -> list[Answer]:
    """Deliver every body once, ``concurrency`` at a time; answers in the bodies' order."""
    start = threading.Event()

    def send(body: bytes) -> Answer:
        start.wait(timeout=30)
        return post(url, body)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(send, body) for body in bodies]
        # Release the first wave together, so duplicates really overlap.
        start.set()
        return [future.result() for future in futures]


def post_until_accepted(url: str, body: bytes, *, attempts: int = 50) -> list[Answer]:
    """Redeliver like the provider, without its minutes of patience, until a 200 (or a 4xx)."""
    answers: list[Answer] = []
    for _ in range(attempts):
        answer = post(url, body)
        answers.append(answer)
        if 200 <= answer.status < 500:
            break
        time.sleep(0.05)
    return answers


# -- the server --------------------------------------------------------------


@dataclass
class Server:
    """A running gunicorn serving :func:`create_app`."""

    url: str
    store_path: Path
    ledger: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def applications(self) -> Counter[tuple[str, str]]:
        """See :func:`applications`."""
        return applications(self.ledger)


@contextmanager
def serve(
    workdir: Path,
    *,
    workers: int = 3,
    threads: int = 4,
    store_options: str = "timeout=1",
    slow_seconds: float = 0.3,
    lease_seconds: float = 300.0,
    preload: bool = True,
    startup_timeout: float = 30.0,
) -> Iterator[Server]:
    """Run gunicorn (gthread workers) on a free loopback port; always stop it afterwards.

    The store is ``workdir/bounces.sqlite3`` opened with the URL query
    ``store_options``; the ledger is ``workdir/ledger.sqlite3``. ``slow_seconds``
    is how long ``apply`` takes for ``slow...`` addresses; ``lease_seconds`` how
    long a crashed worker's claim blocks redeliveries.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    store_path = workdir / "bounces.sqlite3"
    ledger = workdir / "ledger.sqlite3"
    log = workdir / "gunicorn.log"
    create_ledger(ledger)
    env = {
        **os.environ,
        "BOUNCE_STORE_URL": f"sqlite:///{store_path}?{store_options}",
        "BOUNCE_LEDGER": str(ledger),
        "BOUNCE_SLOW_SECONDS": str(slow_seconds),
        "BOUNCE_LEASE_SECONDS": str(lease_seconds),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # The test binds the port itself and hands the socket over: no race for a free port.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        f"--bind=fd://{listener.fileno()}",
        f"--workers={workers}",
        "--worker-class=gthread",
        f"--threads={threads}",
        f"--chdir={ROOT}",
        "--log-level=warning",
        "--graceful-timeout=5",
        *(["--preload"] if preload else []),
        "tests.promise_app:create_app()",
    ]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            pass_fds=[listener.fileno()],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    listener.close()
    server = Server(f"http://127.0.0.1:{port}", store_path, ledger, log, process)
    try:
        _wait_until_ready(server, startup_timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _wait_until_ready(server: Server, timeout: float) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {server.log.read_text(errors='replace')}")
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            try:
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn not ready after {timeout}s: {server.log.read_text()}")
        time.sleep(0.1)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def statuses(answers: Iterable[Answer]) -> dict[int, int]:
    """Answers counted by status, in status order."""
    return dict(sorted(Counter(a.status for a in answers).items()))
