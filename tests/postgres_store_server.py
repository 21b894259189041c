"""A PostgreSQL server a test may stop and start again, and gunicorn on a PostgresStore.

:func:`private_server` starts a server of the test's own (``tests/postgres.py``'s
``start``, never the session's shared one), which :func:`stop` shuts down the
way an administrator's restart does (fast shutdown: sessions are ended) and
:func:`restart` brings back on the same data and port.

:func:`serve` runs ``tests/promise_app.py``'s application under gunicorn, as
``tests.promise_app.serve`` does, but on the PostgreSQL store URL it is given.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import postgres
from tests.postgres import PostgresServer
from tests.promise_app import ROOT, Server, _wait_until_ready, create_ledger


@contextmanager
def private_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresServer]:
    """A new server for this test alone, removed afterwards."""
    # start() returns the session's server when the variable names one.
    with monkeypatch.context() as patch:
        patch.delenv(postgres.URL_VARIABLE, raising=False)
        server = postgres.start()
    try:
        yield server
    finally:
        server.stop()


def stop(server: PostgresServer) -> None:
    """Fast shutdown: every session is ended, new connections are refused."""
    assert server.process is not None
    server.process.send_signal(signal.SIGINT)
    server.process.wait(timeout=60)


def restart(server: PostgresServer) -> None:
    """Start the stopped server again, with the command line it last ran with."""
    assert server.directory is not None
    data = server.directory / "data"
    # PostgreSQL keeps its last command line there (pg_ctl restart reads it too).
    command = shlex.split((data / "postmaster.opts").read_text())
    log = server.directory / "server.log"
    with log.open("ab") as output:
        server.process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=postgres._demote(postgres._unprivileged()),  # noqa: PLW1509
        )
    postgres._wait_until_ready(server, log)


@contextmanager
def serve(
    workdir: Path,
    store_url: str,
    *,
    workers: int = 3,
    threads: int = 4,
    lease_seconds: float = 300.0,
    slow_seconds: float = 0.3,
) -> Iterator[Server]:
    """gunicorn (gthread workers, ``--preload``) serving ``tests.promise_app:create_app()``
    on ``store_url``; the ledger is ``workdir/ledger.sqlite3``. Always stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    ledger = workdir / "ledger.sqlite3"
    log = workdir / "gunicorn.log"
    create_ledger(ledger)
    env = {
        **os.environ,
        "BOUNCE_STORE_URL": store_url,
        "BOUNCE_LEDGER": str(ledger),
        "BOUNCE_SLOW_SECONDS": str(slow_seconds),
        "BOUNCE_LEASE_SECONDS": str(lease_seconds),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
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
        # The master opens the store (create_app calls check()) before forking the workers.
        "--preload",
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
    server = Server(f"http://127.0.0.1:{port}", workdir / "unused", ledger, log, process)
    try:
        _wait_until_ready(server, 60)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
