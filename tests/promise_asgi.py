"""The store's promises under ASGI: ``tests/promise_app.py``'s handlers behind uvicorn workers.

:func:`create_app` is :func:`tests.promise_app.create_app` with the ASGI
front; :func:`serve` runs it under uvicorn (``--workers`` processes sharing
one SQLite store, each delivery in a worker thread) and yields the same
:class:`~tests.promise_app.Server`, so ``tests/test_promises.py``'s tests
run unchanged against it (``tests/test_asgi_promises.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bounce_middleware import open_store
from bounce_middleware.asgi import BounceMiddleware, Receive, Scope, Send
from tests.promise_app import (
    PASSWORD,
    PATH,
    ROOT,
    USER,
    Server,
    _wait_until_ready,
    apply,
    create_ledger,
    flaky,
    notify,
)


async def _root(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"the application\n"})


def create_app() -> BounceMiddleware:
    """The ASGI app uvicorn serves (``--factory tests.promise_asgi:create_app``), configured
    by the environment as :func:`tests.promise_app.create_app` is."""
    return BounceMiddleware(
        _root,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[apply, notify, flaky],
        store=open_store(os.environ["BOUNCE_STORE_URL"]),
        retry_after=1,
        lease_seconds=float(os.environ.get("BOUNCE_LEASE_SECONDS", "300")),
    )


@contextmanager
def serve(
    workdir: Path,
    *,
    workers: int = 3,
    store_options: str = "timeout=1",
    slow_seconds: float = 0.3,
    lease_seconds: float = 300.0,
    startup_timeout: float = 30.0,
) -> Iterator[Server]:
    """Run uvicorn on a free loopback port; always stop it afterwards (see promise_app.serve)."""
    workdir.mkdir(parents=True, exist_ok=True)
    store_path = workdir / "bounces.sqlite3"
    ledger = workdir / "ledger.sqlite3"
    log = workdir / "uvicorn.log"
    create_ledger(ledger)
    env = {
        **os.environ,
        "BOUNCE_STORE_URL": f"sqlite:///{store_path}?{store_options}",
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
        "uvicorn",
        "--factory",
        "tests.promise_asgi:create_app",
        f"--fd={listener.fileno()}",
        f"--workers={workers}",
        "--log-level=warning",
        "--timeout-graceful-shutdown=5",
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
