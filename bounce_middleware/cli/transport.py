"""How ``send`` reaches a route: the URL split for http.client, one POST, the answer cut short."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from bounce_middleware.samples import basic_auth_header

from .common import PROG, CommandError, package_version

# Characters with a meaning in a URL's path and query: kept as they are.
_URL_SAFE = "/%:@!$&'()*+,;=?"
# Enough of an answer to see what went wrong, not a whole HTML error page.
_MAX_SHOWN = 2000


@dataclass(frozen=True, slots=True)
class Target:
    """Where `send` posts: the URL split for http.client, credentials apart."""

    scheme: str
    host: str
    port: int | None
    path: str  # percent-encoded, with the query: what goes on the request line
    route: str  # the path as given, without the query: what the middleware compares
    user: str  # "" when no HTTP Basic credentials are sent
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
    challenge: str = ""  # WWW-Authenticate: the route asks for HTTP Basic credentials

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


def parse_target(
    url: str, *, user: str | None, password: str | None, required: bool = True
) -> Target:
    """Split ``url``; options win over credentials in the URL, which win over the environment.

    ``required=False`` (a provider that signs its requests): HTTP Basic
    credentials, for a route that also checks them, come from the options or
    the URL only (``BOUNCE_USER`` is for Postmark) and are sent when given.
    """
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
    environ = os.environ if required else {}
    user = user or url_user or environ.get("BOUNCE_USER")
    if password is None:
        password = url_password if url_password is not None else environ.get("BOUNCE_PASSWORD")
    if not user:
        if required:
            raise CommandError(
                "no user name: pass --user, put it in the URL (https://user:password@host/path) "
                "or set BOUNCE_USER"
            )
        if password:
            raise CommandError("a password without a user name: pass --user too")
        user, password = "", ""
    if password is None:
        where = "put it in the URL or set BOUNCE_PASSWORD" if required else "or put it in the URL"
        raise CommandError(f"no password: pass --password, {where}")
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


def post(target: Target, headers: Mapping[str, str], body: bytes, timeout: float) -> Reply:
    """POST ``body`` with ``headers`` (and Basic auth, if the target has credentials).

    Returns the answer, its text cut. No redirects are followed: providers do
    not follow them either.
    """
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    # The sample's own headers win: an SNS sample says it comes from SNS's agent.
    sent = {"Accept": "*/*", "User-Agent": f"{PROG}/{package_version()} (send)", **headers}
    if target.user:
        sent["Authorization"] = basic_auth_header(target.user, target.password)
    where = target.display
    try:
        connection.request("POST", target.path, body=body, headers=sent)
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
        challenge=response.headers.get("WWW-Authenticate", ""),
    )
