"""``bounce-middleware send URL``: post a realistic Postmark webhook, as Postmark's test does."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from bounce_middleware.samples import (
    POSTMARK_TYPES,
    RECORD_TYPES,
    basic_auth_header,
    postmark_payload,
)

from .common import EXIT_FAILED, EXIT_OK, PROG, CommandError, package_version, printable

# The path the demo, the examples and the README use; named when a send goes elsewhere.
CONVENTIONAL_PATH = "/postmark/bounce"
# Record shapes that carry an ID and a bounce Type.
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


def add_parser(commands: Any) -> None:
    """Add the ``send`` subcommand to ``commands`` (argparse's subparsers)."""
    send = commands.add_parser(
        "send",
        help="post a realistic Postmark webhook to a URL, like Postmark's 'Send test' button",
        description="Post a realistic Postmark webhook to URL with HTTP Basic auth and print "
        "the answer. Credentials come from --user/--password, else from the URL "
        "(https://user:password@host/path, as configured in Postmark), else from the "
        "BOUNCE_USER and BOUNCE_PASSWORD environment variables. Exit status 0 for a 2xx "
        "answer from bounce-middleware, 1 for any other answer (an answer from the "
        "application instead means the path is not the middleware's), 2 when the server "
        "cannot be reached.",
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
    send.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Target:
    """Where `send` posts: the URL split for http.client, credentials apart."""

    scheme: str
    host: str
    port: int | None
    path: str  # percent-encoded, with the query: what goes on the request line
    route: str  # the path as given, without the query: what the middleware compares
    user: str
    password: str
    display: str  # the URL without credentials, safe to print


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server answered, cut to what is worth printing."""

    status: int
    reason: str
    content_type: str
    location: str
    text: str  # at most _MAX_SHOWN characters, trailing whitespace removed
    cut: bool

    @property
    def from_middleware(self) -> bool:
        """Whether this looks like bounce-middleware's own answer.

        The middleware answers one line of ``text/plain`` and never 404 nor a
        redirect; anything else came from the application behind it (or a proxy).
        """
        return (
            self.status != 404
            and not 300 <= self.status < 400
            and self.content_type == "text/plain"
            and "\n" not in self.text
            and not self.cut
        )


def run(args: argparse.Namespace) -> int:
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
    reply = post(target, json.dumps(payload).encode("utf-8"), args.timeout)
    print(f"{reply.status} {reply.reason}")
    if not reply.from_middleware:
        # A whole HTML error page (Django's debug 404 is 72 lines) hides the one thing to fix.
        print(advice(reply, target.route))
        return EXIT_FAILED
    if reply.text:
        print(reply.text)
    return EXIT_OK if 200 <= reply.status < 300 else EXIT_FAILED


def advice(reply: Reply, route: str) -> str:
    """One line saying why an answer that is not the middleware's came, and what to try."""
    if 300 <= reply.status < 400:
        where = printable(reply.location) or "another URL"
        return (
            f"a redirect to {where}, not followed (Postmark does not follow redirects "
            "either): send to the final URL"
        )
    shown = printable(route)
    if len(route) > 1 and route.endswith("/"):
        hint = f"try {printable(route.rstrip('/'))}, without the trailing slash"
    elif route == CONVENTIONAL_PATH:
        hint = "is the middleware installed around this application, with this path?"
    else:
        hint = (
            f"the demo and the examples use {CONVENTIONAL_PATH}; check the path your "
            "middleware is configured with"
        )
    return (
        f"not bounce-middleware's answer: the application (or a proxy) answered the POST to "
        f"{shown} itself; the middleware answers only its exact configured path ({hint})"
    )


def parse_target(url: str, *, user: str | None, password: str | None) -> Target:
    """Split ``url``; options win over credentials in the URL, which win over the environment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Never echo the URL itself: it may carry the password (https://user:password@host/).
        shown = f"a {parts.scheme}: URL" if parts.scheme else "no scheme"
        raise CommandError(f"URL must look like http://host/path or https://host/path, got {shown}")
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
        route=unquote(parts.path or "/"),
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


def post(target: Target, body: bytes, timeout: float) -> Reply:
    """POST ``body`` as JSON with Basic auth and return the answer (its text cut).

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
        "User-Agent": f"{PROG}/{package_version()} (send)",
        "Authorization": basic_auth_header(target.user, target.password),
    }
    where = target.display
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(_MAX_SHOWN + 1)
    except ConnectionRefusedError:
        raise CommandError(f"connection refused: no server is running at {where}") from None
    except socket.gaierror:
        raise CommandError(f"cannot resolve the host name {target.host!r}") from None
    except TimeoutError:
        raise CommandError(f"no answer from {where} within {timeout:g} seconds") from None
    except ssl.SSLError as exc:
        raise CommandError(f"TLS failed with {where}: {exc.reason or exc}") from None
    except (http.client.HTTPException, ConnectionResetError, BrokenPipeError) as exc:
        # RemoteDisconnected and friends: something listens there, but does not speak HTTP
        # (a peer that hangs up on unread data resets the connection instead).
        raise CommandError(f"{where} did not answer with HTTP ({type(exc).__name__})") from None
    except OSError as exc:
        raise CommandError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    finally:
        connection.close()
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        text = data[:_MAX_SHOWN].decode(charset, errors="replace")
    except LookupError:  # an unknown charset name in Content-Type
        text = data[:_MAX_SHOWN].decode("utf-8", errors="replace")
    cut = len(data) > _MAX_SHOWN
    return Reply(
        status=response.status,
        reason=response.reason,
        content_type=response.headers.get_content_type(),
        location=response.headers.get("Location", ""),
        text=text.rstrip() + ("\n[... answer cut]" if cut else ""),
        cut=cut,
    )


def _describe(record_type: str, payload: dict[str, Any]) -> str:
    email = payload.get("Email", payload.get("Recipient", payload.get("From", "")))
    what = record_type if record_type not in ("Bounce", "Legacy") else payload["Type"]
    event = f", ID {payload['ID']}" if "ID" in payload else ""
    return f"{what} for {printable(str(email))}{event}"
