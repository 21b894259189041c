"""``bounce-middleware demo``: serve the demo site with waitress until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import itertools
import logging
import secrets
import shlex
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from bounce_middleware.errors import ConfigurationError, ImproperlyInstalled, StoreUnavailable

from .common import EXIT_OK, PROG, CommandError, close_store, non_negative_int

# What `replay --app` takes for the demo: make_app() with no arguments opens its database.
_DEMO_APP = "bounce_middleware.demo:make_app"


def add_parser(commands: Any) -> None:
    """Add the ``demo`` subcommand to ``commands`` (argparse's subparsers)."""
    demo = commands.add_parser(
        "demo",
        help="run a small demo site that flags users whose address bounced",
        description="Serve, with waitress, a small site with a few users, wrapped by "
        "BounceMiddleware with a SQLite store and a webhook route for every provider "
        "(Postmark with a new password, Mailgun with a new signing key, SendGrid and Amazon "
        "SES with the samples' TEST keys). It prints the routes and the `send` commands that "
        "flag its users. Ctrl-C stops it. Delete bounce-demo.sqlite3* (the file and "
        "its -wal/-shm companions) to start over.",
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    demo.add_argument(
        "--port",
        type=non_negative_int,
        default=8000,
        help="port (default: 8000; 0 picks a free one)",
    )
    demo.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite file for users and bounces (default: $BOUNCE_DEMO_DB, else "
        "./bounce-demo.sqlite3)",
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve the demo site with waitress until Ctrl-C, SIGTERM or SIGHUP."""
    try:
        from waitress.server import create_server
    except ImportError:
        raise CommandError(str(ImproperlyInstalled("demo", "waitress"))) from None
    # Imported only now: the demo site needs sqlite3 and WebOb, the other commands do not.
    import sqlite3

    from bounce_middleware import demo

    db = (Path(args.db) if args.db else demo.database_path()).resolve()
    password = new_password()
    # Hex never starts with "-", which the printed `send --secret ...` would read as an option.
    signing_key = secrets.token_hex(16)
    # Cleanup runs on any exit; then a Ctrl-C or SIGTERM, wherever it came, ends quietly.
    with _stop_on_signals(), ExitStack() as cleanup:
        try:
            # Our own socket: one address (never several, as "localhost" may resolve to),
            # and a busy port fails here, before waitress has anything to clean up.
            listener = cleanup.enter_context(_listen(args.host, args.port))
        except OSError as exc:
            raise CommandError(
                f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc} "
                "(--port picks another; --port 0 a free one)"
            ) from None
        try:
            app = demo.make_app(
                db,
                credentials=[f"{demo.DEMO_USER}:{password}"],
                mailgun_signing_key=signing_key,
            )
        except (ConfigurationError, StoreUnavailable, sqlite3.Error) as exc:
            raise CommandError(f"cannot open {db}: {exc}") from None
        # Closed last, after the server: its connections go, and with the last one
        # SQLite removes the -wal and -shm files.
        cleanup.callback(close_store, app.store)
        # The middleware's one line per webhook (key, type, kind, answer) shows on stderr.
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
        )
        logging.getLogger("waitress").setLevel(logging.WARNING)  # we print our own banner
        before = set(threading.enumerate())
        server = create_server(app, sockets=[listener], threads=4)
        # Run in reverse: close the server, wait for its threads, then close the store.
        cleanup.callback(_join, set(threading.enumerate()) - before)
        cleanup.callback(server.close)
        secrets_shown = {"postmark": password, "mailgun": signing_key}
        unserved = getattr(app.app, "unserved", {})
        print(banner(args.host, listener.getsockname()[1], db, secrets_shown, unserved), flush=True)
        server.run()  # returns once waitress has caught the KeyboardInterrupt
    print("bounce-middleware demo stopped. Bye!", flush=True)
    return EXIT_OK


def new_password() -> str:
    """A random password for one run of the demo (16 characters, never a leading ``-``).

    One in 64 of ``token_urlsafe`` values starts with ``-``, which the printed
    ``send --password ...`` command would then read as an option.
    """
    while (password := secrets.token_urlsafe(12)).startswith("-"):
        pass
    return password


def banner(
    host: str, port: int, db: Path, secrets_shown: dict[str, str], unserved: dict[str, str]
) -> str:
    """What the demo is, where, its routes, and the commands to try with it."""
    from bounce_middleware.demo import DB_ENV, DEFAULT_DB, DEMO_PATHS, DEMO_USER, SEED_USERS

    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    password, signing_key = secrets_shown["postmark"], secrets_shown["mailgun"]
    from bounce_middleware.demo_routes import resend_secret

    resend = resend_secret(signing_key)
    basic = f"HTTP Basic user {DEMO_USER}, password {password}"
    how = {
        "postmark": basic,
        "sendgrid": "the samples' TEST public key",
        "mailgun": f"signing key {signing_key}",
        "amazon_ses": "the samples' TEST topic and certificate (no network)",
        "mailjet": basic,
        "sparkpost": basic,
        "brevo": basic,
        "resend": f"signing secret {resend}",
        "mandrill": f"webhook key {signing_key}, over the URL it is called by",
    }
    user = ["--user", DEMO_USER, "--password", password]
    options = {
        "postmark": user,
        "mailgun": ["--provider", "mailgun", "--secret", signing_key],
        "mailjet": ["--provider", "mailjet", *user],
        "sparkpost": ["--provider", "sparkpost", *user],
        "brevo": ["--provider", "brevo", *user],
        "resend": ["--provider", "resend", "--secret", resend],
        "mandrill": ["--provider", "mandrill", "--secret", signing_key],
    }
    width = max(len(name) for name in DEMO_PATHS)
    url_width = len(base) + max(len(path) for path in DEMO_PATHS.values())
    routes, sends = [], []
    # One user per provider (cycling, should there be more providers than users).
    for (name, path), (_, email) in zip(DEMO_PATHS.items(), itertools.cycle(SEED_USERS)):
        if name in unserved:
            routes.append(
                f"  {name:<{width}}  {base + path:<{url_width}}  not served: {unserved[name]}"
            )
            continue
        routes.append(f"  {name:<{width}}  {base + path:<{url_width}}  {how[name]}")
        extra = options.get(name, ["--provider", name])
        sends.append(shlex.join([PROG, "send", base + path, *extra, "--email", email]))
    listing = shlex.join([PROG, "list", "--store", f"sqlite:///{db}"])
    replay = shlex.join([PROG, "replay", "--app", _DEMO_APP])
    if db != Path(DEFAULT_DB).resolve():
        # make_app() called with no arguments finds the database through the environment.
        replay = f"{DB_ENV}={shlex.quote(str(db))} {replay}"
    others = "".join(f"  {command}\n" for command in sends[1:])
    return (
        f"bounce-middleware demo: open {base}/ in your browser\n"
        f"  database  {db}  (delete {db.name}* to start over)\n"
        "\n"
        "Webhook routes, one per provider:\n" + "\n".join(routes) + "\n"
        "\n"
        f"Flag {SEED_USERS[0][1]} with a hard bounce: in a second terminal, run\n"
        "\n"
        f"  {sends[0]}\n"
        "\n"
        "then reload the page."
        + (f" The other providers' samples flag the other users:\n\n{others}\n" if others else "\n")
        + f"Recorded bounces:   {listing}\n"
        f"Replay what failed: {replay}\n"
        "Press Ctrl-C to stop."
    )


def _join(workers: set[threading.Thread]) -> None:
    """Wait until the server's worker threads have ended, to the last step.

    Each thread's store connection is closed as the thread ends, after it has
    left ``threading.enumerate()``; closing the store before that leaves a
    connection open, and SQLite then keeps the -wal and -shm files (one stop
    in five). ``join`` returns only once the thread is completely gone.
    """
    for thread in workers:
        # A dummy thread stands for one that threading did not start: it cannot be joined.
        if not isinstance(thread, threading._DummyThread) and thread is not threading.main_thread():
            thread.join(timeout=5)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on the first address ``host`` resolves to."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Make SIGTERM and SIGHUP (a closed terminal) stop the demo as Ctrl-C does.

    So the store is closed and SQLite's -wal/-shm files removed however it ends
    (only the main thread may set handlers; SIGHUP does not exist on Windows).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signals = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    for stop in signals:
        previous[stop] = signal.signal(stop, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass  # stopped before the server ran
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
