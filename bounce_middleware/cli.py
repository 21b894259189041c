"""The ``bounce-middleware`` command: test a deployment, inspect and replay stored bounces, demo.

::

    bounce-middleware send https://postmark:s3cret@example.com/postmark/bounce --email a@example.com
    bounce-middleware list --store sqlite:///bounces.sqlite3 --kind hard
    bounce-middleware replay --store sqlite:///bounces.sqlite3 --app myproject.wsgi:application
    bounce-middleware demo

Exit status: 0 on success, 1 when the server answered non-2xx or a replayed
handler still fails, 2 for a usage error or when the server or store cannot be
reached.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import inspect
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import sqlite3
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .errors import ConfigurationError, ImproperlyInstalled, PayloadError, StoreUnavailable
from .middleware import BounceMiddleware
from .model import BounceKind
from .providers import Ignored
from .settings import resolve
from .store import Record, Store, open_store
from .testing import POSTMARK_TYPES, basic_auth_header, postmark_payload

PROG = "bounce-middleware"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Record shapes `send` can post; the first three carry an ID and a bounce Type.
RECORD_TYPES = (
    "Bounce",
    "SpamComplaint",
    "Legacy",
    "SubscriptionChange",
    "Delivery",
    "Open",
    "Click",
    "Inbound",
)
_WITH_ID = frozenset({"Bounce", "SpamComplaint", "Legacy"})
_TIME_FIELDS = {
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "Legacy": "BouncedAt",
    "SubscriptionChange": "ChangedAt",
    "Delivery": "DeliveredAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
}
# Characters with a meaning in a URL's path and query: kept as they are.
_URL_SAFE = "/%:@!$&'()*+,;=?"
# Enough of an answer to see what went wrong, not a whole HTML error page.
_MAX_SHOWN = 2000
# Attributes under which WSGI wrappers keep the app they wrap: BounceMiddleware and most
# middleware use `app`, Flask keeps its (wrapped) WSGI callable in `wsgi_app`, whitenoise
# uses `application`.
_WRAPPED_ATTRS = ("app", "wsgi_app", "application")


class CommandError(Exception):
    """A usage or environment problem, printed as one line; exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bounce-middleware`` command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        status: int = args.run(args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its four subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Receive e-mail bounce webhooks in any WSGI app: tools for checking "
        "a deployment, inspecting and replaying recorded bounces, and a demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = commands.add_parser(
        "send",
        help="post a realistic Postmark webhook to a URL, like Postmark's 'Send test' button",
        description="Post a realistic Postmark webhook to URL with HTTP Basic auth and print "
        "the answer. Credentials come from --user/--password, else from the URL "
        "(https://user:password@host/path, as configured in Postmark), else from the "
        "BOUNCE_USER and BOUNCE_PASSWORD environment variables. Exit status 0 for a 2xx "
        "answer, 1 for any other answer, 2 when the server cannot be reached.",
    )
    send.add_argument(
        "url", metavar="URL", help="the webhook URL, e.g. http://127.0.0.1:8000/postmark/bounce"
    )
    send.add_argument("--user", metavar="NAME", help="HTTP Basic user name")
    send.add_argument(
        "--password",
        metavar="SECRET",
        help="HTTP Basic password (visible in your shell history: prefer BOUNCE_PASSWORD)",
    )
    send.add_argument(
        "--record-type",
        choices=RECORD_TYPES,
        default="Bounce",
        metavar="RECORD",
        help=f"payload shape: {', '.join(RECORD_TYPES)} (default: Bounce)",
    )
    send.add_argument(
        "--type",
        choices=sorted(POSTMARK_TYPES),
        metavar="TYPE",
        help="Postmark bounce Type for Bounce and Legacy records, e.g. HardBounce (the "
        "default), SoftBounce, Transient, SpamNotification, ManuallyDeactivated",
    )
    send.add_argument(
        "--email",
        metavar="ADDRESS",
        help="the address that bounced (default: Postmark's john@example.com)",
    )
    send.add_argument(
        "--id",
        type=int,
        metavar="N",
        help="the event ID (default: a new random one, so each send is a new event; "
        "send one ID twice to see a redelivery)",
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for the answer (default: 10)",
    )
    send.set_defaults(run=cmd_send)

    store_help = "store URL, e.g. sqlite:///bounces.sqlite3 (default: $BOUNCE_STORE)"
    listing = commands.add_parser(
        "list",
        help="show recorded bounces, newest first",
        description="Show the bounces recorded in a store, newest first.",
    )
    listing.add_argument(
        "--store", default=os.environ.get("BOUNCE_STORE"), metavar="URL", help=store_help
    )
    listing.add_argument(
        "--kind",
        choices=[kind.value for kind in BounceKind],
        metavar="KIND",
        help=f"only this kind: {', '.join(kind.value for kind in BounceKind)}",
    )
    listing.add_argument("--email", metavar="ADDRESS", help="only this address (case-insensitive)")
    listing.add_argument(
        "--unfinished", action="store_true", help="only events with handlers not yet completed"
    )
    listing.add_argument(
        "--limit",
        type=_non_negative_int,
        default=100,
        metavar="N",
        help="show at most N events (default: 100; 0 shows all)",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array instead")
    listing.set_defaults(run=cmd_list)

    replay = commands.add_parser(
        "replay",
        help="re-run the handlers that did not complete, e.g. after Postmark gave up",
        description="For every unfinished event in the store, parse its stored body again "
        "and run, through the application's BounceMiddleware, the handlers that have not "
        "completed it. --app names module:attribute (imported with the current directory "
        "on sys.path): the BounceMiddleware itself, a WSGI app wrapping it (found through "
        "the wrapped apps' .app, .wsgi_app or .application attributes, which covers "
        "Flask apps and ordinary middleware stacks), or a function taking no arguments "
        "that returns either (an application factory). Exit status 1 when any event "
        "still fails.",
    )
    replay.add_argument(
        "--app", required=True, metavar="MODULE:ATTR", help="e.g. myproject.wsgi:application"
    )
    replay.add_argument(
        "--store",
        default=os.environ.get("BOUNCE_STORE"),
        metavar="URL",
        help="store URL (default: $BOUNCE_STORE, else the middleware's own store)",
    )
    replay.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    replay.set_defaults(run=cmd_replay)

    demo = commands.add_parser(
        "demo",
        help="run a small demo site that flags users whose address bounced",
        description="Serve, with waitress, a small site with a few users, wrapped by "
        "BounceMiddleware with a SQLite store. It prints the `send` command that flags "
        "one of its users. Ctrl-C stops it.",
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    demo.add_argument(
        "--port",
        type=_non_negative_int,
        default=8000,
        help="port (default: 8000; 0 picks a free one)",
    )
    demo.add_argument(
        "--db",
        default="bounce-demo.sqlite3",
        metavar="PATH",
        help="SQLite file for users and bounces (default: ./bounce-demo.sqlite3)",
    )
    demo.set_defaults(run=cmd_demo)
    return parser


# -- send ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where `send` posts: the URL split for http.client, credentials apart."""

    scheme: str
    host: str
    port: int | None
    path: str
    user: str
    password: str
    display: str  # the URL without credentials, safe to print


def cmd_send(args: argparse.Namespace) -> int:
    """Post one webhook and print the answer."""
    target = parse_target(args.url, user=args.user, password=args.password)
    if args.type is not None and args.record_type not in ("Bounce", "Legacy"):
        raise CommandError("--type applies to Bounce and Legacy records only")
    if args.id is not None and args.record_type not in _WITH_ID:
        raise CommandError(f"--id applies to {', '.join(sorted(_WITH_ID))} records only")
    if args.timeout <= 0:
        raise CommandError("--timeout must be a positive number of seconds")
    payload = make_payload(args.record_type, args.type, email=args.email, event_id=args.id)
    print(f"POST {target.display}  ({_describe(args.record_type, payload)})")
    status, reason, text = post(target, json.dumps(payload).encode("utf-8"), args.timeout)
    print(f"{status} {reason}")
    if text:
        print(text)
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED


def parse_target(url: str, *, user: str | None, password: str | None) -> Target:
    """Split ``url``; options win over credentials in the URL, which win over the environment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"URL must look like http://host/path or https://host/path, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise CommandError("the port in URL is not a number between 0 and 65535") from None
    hostport = parts.netloc.rpartition("@")[2]
    # Percent-encode what may not go on the request line (spaces, non-ASCII), as browsers do.
    path = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE)
    url_user = unquote(parts.username) if parts.username is not None else None
    url_password = unquote(parts.password) if parts.password is not None else None
    user = user or url_user or os.environ.get("BOUNCE_USER")
    if password is None:
        password = url_password if url_password is not None else os.environ.get("BOUNCE_PASSWORD")
    if not user:
        raise CommandError(
            "no user name: pass --user, put it in the URL (https://user:password@host/path) "
            "or set BOUNCE_USER"
        )
    if password is None:
        raise CommandError("no password: pass --password, put it in the URL or set BOUNCE_PASSWORD")
    return Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        path=path,
        user=user,
        password=password,
        display=f"{parts.scheme}://{hostport}{path}",
    )


def make_payload(
    record_type: str, bounce_type: str | None, *, email: str | None, event_id: int | None
) -> dict[str, Any]:
    """A Postmark payload of ``record_type``, stamped now, with a fresh ID unless given."""
    overrides: dict[str, Any] = {}
    if bounce_type is not None:
        overrides["type"] = bounce_type
    if email is not None:
        overrides["email"] = email
    if record_type in _WITH_ID:
        # A fresh ID per run: the store de-duplicates by ID, so a fixed one (Postmark's
        # test button sends 42) would be "already processed" from the second send on.
        overrides["ID"] = (
            event_id if event_id is not None else 1_000_000_000 + secrets.randbelow(9_000_000_000)
        )
    if record_type in _TIME_FIELDS:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        overrides[_TIME_FIELDS[record_type]] = now
    return postmark_payload(record_type, **overrides)


def post(target: Target, body: bytes, timeout: float) -> tuple[int, str, str]:
    """POST ``body`` as JSON with Basic auth; return status, reason and the (cut) answer text.

    No redirects are followed: Postmark does not follow them either.
    """
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    headers = {
        "Content-Type": "application/json",
        "Accept": "*/*",
        "User-Agent": f"{PROG}/{_version()} (send)",
        "Authorization": basic_auth_header(target.user, target.password),
    }
    where = target.display
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(_MAX_SHOWN + 1)
        charset = response.headers.get_content_charset() or "utf-8"
    except ConnectionRefusedError:
        raise CommandError(f"connection refused: no server is running at {where}") from None
    except socket.gaierror:
        raise CommandError(f"cannot resolve the host name {target.host!r}") from None
    except TimeoutError:
        raise CommandError(f"no answer from {where} within {timeout:g} seconds") from None
    except ssl.SSLError as exc:
        raise CommandError(f"TLS failed with {where}: {exc.reason or exc}") from None
    except http.client.HTTPException as exc:
        # RemoteDisconnected and friends: something listens there, but does not speak HTTP.
        raise CommandError(f"{where} did not answer with HTTP ({type(exc).__name__})") from None
    except OSError as exc:
        raise CommandError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    finally:
        connection.close()
    try:
        text = data[:_MAX_SHOWN].decode(charset, errors="replace")
    except LookupError:  # an unknown charset name in Content-Type
        text = data[:_MAX_SHOWN].decode("utf-8", errors="replace")
    text = text.rstrip()
    if len(data) > _MAX_SHOWN:
        text += "\n[... answer cut]"
    return response.status, response.reason, text


def _describe(record_type: str, payload: dict[str, Any]) -> str:
    email = payload.get("Email", payload.get("Recipient", payload.get("From", "")))
    what = record_type if record_type not in ("Bounce", "Legacy") else payload["Type"]
    event = f", ID {payload['ID']}" if "ID" in payload else ""
    return f"{what} for {_printable(str(email))}{event}"


# -- list ------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """Print the recorded bounces, newest first."""
    store = open_existing_store(args.store, read_only=True)
    limit = args.limit or None
    kind = BounceKind(args.kind) if args.kind else None
    try:
        # One more than asked, to tell whether the listing was cut.
        records = list(
            store.records(
                kind=kind,
                email=args.email,
                unfinished=args.unfinished,
                limit=None if limit is None else limit + 1,
            )
        )
    except StoreUnavailable as exc:
        raise CommandError(f"cannot read the store: {exc}") from None
    finally:
        close_store(store)
    cut = limit is not None and len(records) > limit
    records = records[:limit]
    if args.json:
        print(json.dumps([record_json(r) for r in records], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not records:
        filtered = args.kind or args.email or args.unfinished
        print("no recorded bounces match" if filtered else "no recorded bounces yet")
        return EXIT_OK
    print_table(
        ["RECEIVED", "KIND", "TYPE", "EMAIL", "STATE", "TRIES", "KEY", "COMPLETED HANDLERS"],
        [
            [
                _utc(r.received_at),
                r.kind.value,
                r.type,
                r.email,
                "done" if r.finished else "pending",
                str(r.attempts),
                r.key,
                ", ".join(sorted(r.completed)) or "-",
            ]
            for r in records
        ],
    )
    if cut:
        print(f"(the newest {limit} shown; --limit 0 shows all)")
    return EXIT_OK


def record_json(record: Record) -> dict[str, Any]:
    """A record as JSON-ready data (without its body)."""
    return {
        "key": record.key,
        "provider": record.provider,
        "received_at": _aware(record.received_at).isoformat(),
        "kind": record.kind.value,
        "type": record.type,
        "email": record.email,
        "finished": record.finished,
        "attempts": record.attempts,
        "completed": sorted(record.completed),
    }


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print left-aligned columns, two spaces apart."""
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def open_existing_store(url: str | None, *, read_only: bool = False) -> Store:
    """Open the store at ``url``, refusing to create a new SQLite file by mistake."""
    if not url:
        raise CommandError("no store: pass --store sqlite:///path/to/bounces.sqlite3")
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if path.name and not path.is_file():
            raise CommandError(
                f"no store file at {str(path)!r} (sqlite:///relative/path, "
                "sqlite:////absolute/path)"
            )
        if read_only:
            from .sqlite_store import SQLiteStore

            return SQLiteStore(path, read_only=True)
    try:
        return open_store(url)
    except (ConfigurationError, StoreUnavailable) as exc:
        raise CommandError(str(exc)) from None


def close_store(store: Store | None) -> None:
    """Close a store that has a ``close`` method (SQLiteStore does; the protocol does not ask)."""
    close = getattr(store, "close", None)
    if callable(close):
        close()


# -- replay ----------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run the handlers that did not complete, oldest event first."""
    middleware = load_middleware(args.app)
    if args.store:
        # A copy, so the application object keeps its own store.
        middleware = copy.copy(middleware)
        middleware.store = open_existing_store(args.store)
    elif middleware.store is None:
        raise CommandError("the middleware has no store: pass --store")
    store = middleware.store
    assert store is not None
    try:
        records = list(store.records(unfinished=True, limit=None))
    except StoreUnavailable as exc:
        raise CommandError(f"cannot read the store: {exc}") from None
    if not records:
        print("nothing to replay: every recorded bounce is finished")
        return EXIT_OK
    failed = 0
    try:
        for record in reversed(records):
            ok, line = replay_one(middleware, record, dry_run=args.dry_run)
            failed += not ok
            print(line)
    finally:
        if args.store:
            close_store(store)
    verb = "checked" if args.dry_run else "replayed"
    print(f"{verb} {len(records)} event(s): {len(records) - failed} ok, {failed} failed")
    return EXIT_FAILED if failed else EXIT_OK


def replay_one(middleware: BounceMiddleware, record: Record, *, dry_run: bool) -> tuple[bool, str]:
    """Replay one stored event; return whether it is now finished and a line to print."""
    label = f"{record.key} {record.type} {_printable(record.email)}"
    if not record.body:
        return False, f"{label}: skipped, the store kept no body for it"
    try:
        parsed = middleware.provider.parse(record.body)
    except PayloadError as exc:
        return False, f"{label}: skipped, its stored body does not parse: {exc.reason}"
    if isinstance(parsed, Ignored) or parsed.key != record.key:
        return False, f"{label}: skipped, its stored body is not this event"
    pending = [
        h.name for h in middleware.handlers if h.wants(parsed) and h.name not in record.completed
    ]
    names = ", ".join(pending) or "no handler"
    if dry_run:
        return True, f"{label}: would run {names}"
    answer = middleware.dispatch(parsed)
    return answer.status == 200, f"{label}: ran {names} -> {answer.status} {answer.reason}"


def load_middleware(spec: str) -> BounceMiddleware:
    """Import ``module:attr`` and find the BounceMiddleware in it (see ``replay --help``)."""
    # Console scripts do not put the current directory on sys.path; gunicorn and flask do.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = resolve(spec)
    except TypeError as exc:
        raise CommandError(f"--app {spec}: {exc}") from None
    found = find_middleware(target)
    if found is None and _is_factory(target):
        found = find_middleware(target())
    if found is None:
        raise CommandError(
            f"--app {spec}: no BounceMiddleware found in this {type(target).__name__}; name the "
            "middleware, a WSGI app wrapping it, or a function returning either"
        )
    return found


def find_middleware(app: object) -> BounceMiddleware | None:
    """The BounceMiddleware that is ``app`` or that ``app`` wraps, following wrapped apps."""
    seen: set[int] = set()
    queue = [app]
    while queue and len(seen) < 64:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BounceMiddleware):
            return current
        for attr in _WRAPPED_ATTRS:
            try:
                inner = getattr(current, attr, None)
            except Exception:  # a proxy object may raise anything from __getattr__
                continue
            if inner is not None:
                queue.append(inner)
    return None


def _is_factory(target: object) -> bool:
    if not callable(target) or isinstance(target, type):
        return False
    try:
        inspect.signature(target).bind()
    except (TypeError, ValueError):
        return False
    return True


# -- demo ------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Serve the demo site with waitress until Ctrl-C or SIGTERM."""
    try:
        from waitress.server import create_server
    except ImportError:
        raise CommandError(str(ImproperlyInstalled("demo", "waitress"))) from None
    from .demo import BOUNCE_PATH, DEMO_USER, SEED_USERS, make_app

    db = Path(args.db).resolve()
    password = secrets.token_urlsafe(12)
    # Cleanup runs on any exit; then a Ctrl-C or SIGTERM, wherever it came, ends quietly.
    with _stop_on_sigterm(), ExitStack() as cleanup:
        try:
            # Our own socket: one address (never several, as "localhost" may resolve to),
            # and a busy port fails here, before waitress has anything to clean up.
            listener = cleanup.enter_context(_listen(args.host, args.port))
        except OSError as exc:
            raise CommandError(
                f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        try:
            app = make_app(db, credentials=[f"{DEMO_USER}:{password}"])
        except (StoreUnavailable, sqlite3.Error) as exc:
            raise CommandError(f"cannot open {db}: {exc}") from None
        cleanup.callback(close_store, app.store)
        # The middleware's one line per webhook (key, type, kind, answer) shows on stderr.
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
        )
        logging.getLogger("waitress").setLevel(logging.WARNING)  # we print our own banner
        server = create_server(app, sockets=[listener], threads=4)
        cleanup.callback(server.close)
        host = f"[{args.host}]" if ":" in args.host else args.host
        base = f"http://{host}:{listener.getsockname()[1]}"
        command = shlex.join(
            [PROG, "send", base + BOUNCE_PATH, "--user", DEMO_USER, "--password", password,
             "--email", SEED_USERS[0][1]]
        )  # fmt: skip
        print(
            f"bounce-middleware demo: open {base}/ in your browser\n"
            f"  webhook   {base}{BOUNCE_PATH}  (user {DEMO_USER}, password {password})\n"
            f"  database  {db}  (delete it to start over)\n"
            "\n"
            f"Flag {SEED_USERS[0][1]} with a hard bounce: in a second terminal, run\n"
            "\n"
            f"  {command}\n"
            "\n"
            "then reload the page. Recorded bounces: "
            f"{shlex.join([PROG, 'list', '--store', f'sqlite:///{db}'])}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        server.run()  # returns once waitress has caught the KeyboardInterrupt
    print("bounce-middleware demo stopped. Bye!", flush=True)
    return EXIT_OK


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on the first address ``host`` resolves to."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Make SIGTERM stop the demo as Ctrl-C does (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous: Callable[[int, FrameType | None], Any] | int | None
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass  # stopped before the server ran
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- helpers ---------------------------------------------------------------------------------


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _printable(text: str) -> str:
    # Stored addresses come from webhook bodies: keep control characters off the terminal.
    return "".join(c if c.isprintable() else "?" for c in text)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _version() -> str:
    try:
        return version("bounce-middleware")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
