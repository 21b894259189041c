"""A real PostgreSQL server for the tests, started once per test session.

The server is the distribution's (Debian's ``postgresql`` package, which
``.ci/run`` installs when it is missing), run from a temporary data directory
on a free loopback port. PostgreSQL refuses to run as root, so as root it runs
as the ``postgres`` user (or ``nobody``). ``BOUNCE_TEST_POSTGRES_URL`` points
the tests at a server of your own instead (its user must be able to create
databases).

Nothing here skips: without a server the tests that need one fail, saying how
to install it.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL is needed for these tests: apt-get install postgresql "
    "(or set BOUNCE_TEST_POSTGRES_URL=postgresql://user@host:port/db)"
)


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    candidates = [str(Path(found).resolve().parent)] if found else []
    # Debian keeps the server binaries off PATH, one directory per major version.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "postgres").exists():
            return Path(directory)
    raise RuntimeError(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


def _demote(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    if user is None:
        return None

    def demote() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return demote


@dataclass
class PostgresServer:
    """A running server: ``url(db)`` names a database on it; ``create_database()`` makes one."""

    host: str
    port: int
    user: str
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None
    admin_db: str = "postgres"

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy-style URL (``postgresql+psycopg://`` with ``driver=...``)."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "bounce") -> str:
        """A new empty database; returns its name."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(self.admin_db), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        """Stop the server started by :func:`start` and delete its data."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


_SERVER: PostgresServer | None = None
URL_VARIABLE = "BOUNCE_TEST_POSTGRES_URL"


def server() -> PostgresServer:
    """The test session's server, started on first use and stopped when this process exits.

    The first call sets ``BOUNCE_TEST_POSTGRES_URL``, so that processes the tests
    start (servers, workers, Django settings imported there) use the same server.
    """
    global _SERVER
    if _SERVER is None:
        owned = not os.environ.get(URL_VARIABLE)
        _SERVER = start()
        if owned:
            os.environ[URL_VARIABLE] = _SERVER.url(_SERVER.admin_db)
            atexit.register(_SERVER.stop)
    return _SERVER


def start() -> PostgresServer:
    """The server of ``BOUNCE_TEST_POSTGRES_URL``, or a new one in a temporary directory."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        from urllib.parse import urlsplit

        parts = urlsplit(given)
        return PostgresServer(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            admin_db=parts.path.lstrip("/") or "postgres",
        )
    bin_dir = _bin_dir()
    user = _unprivileged()
    directory = Path(tempfile.mkdtemp(prefix="bounce-pg-"))
    data = directory / "data"
    if user is not None:
        os.chown(directory, user.pw_uid, user.pw_gid)
    demote = _demote(user)
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            # A Unicode-aware ctype: lower()/upper() fold more than ASCII.
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
        preexec_fn=demote,  # noqa: PLW1509 - single-threaded at this point
    )
    port = _free_port()
    # The server inherits the file; the parent's handle is closed once it has started.
    with open(directory / "server.log", "wb") as log:
        process = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(directory),
                # A throw-away server: durability costs time and proves nothing here.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=demote,  # noqa: PLW1509
        )
    server = PostgresServer("127.0.0.1", port, "postgres", process, directory)
    _wait_until_ready(server, directory / "server.log")
    return server


def _wait_until_ready(server: PostgresServer, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited at start-up:\n{log.read_text(errors='replace')}")
        try:
            with psycopg.connect(server.url("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("PostgreSQL did not accept connections within 60 s") from None
            time.sleep(0.1)
