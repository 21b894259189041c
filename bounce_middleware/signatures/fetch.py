"""The one outbound call: an HTTPS GET with a timeout, a size cap and no redirects.

Used for SNS signing certificates (and, by the SES provider, subscription
confirmations). Callers check the URL against the provider's hosts first;
providers take any ``fetch(url) -> bytes`` so that tests, proxies and async
stacks can inject their own, and the tests never touch the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeAlias

from bounce_middleware.errors import BounceError

if TYPE_CHECKING:
    import email.message
    import ssl

#: ``fetch(url) -> bytes``: any exception it raises, or a result that is not bytes, is a
#: failure worth a retry (:func:`~.sns.fetch_bytes` makes it a :class:`FetchError`).
Fetch: TypeAlias = Callable[[str], bytes]

#: Seconds per connect or read, and (roughly) for the whole download. SNS gives
#: up on our answer after 15 s; the certificate is fetched while SNS waits, so
#: a slow AWS endpoint must leave time to answer (503: SNS retries).
DEFAULT_TIMEOUT = 5.0

#: An SNS certificate in PEM is about 2 KB; a bigger answer is not one.
DEFAULT_MAX_BYTES = 64 * 1024


class FetchError(BounceError, OSError):
    """An outbound fetch failed (network, TLS, status, size, time).

    Not a :class:`~.common.SignatureError`: the request may be authentic and the
    failure ours or the network's, so a provider answers 503 and the sender
    retries (SNS counts any 4xx as delivered and would never resend it).
    ``reason`` is one line, safe to log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch_https(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    context: ssl.SSLContext | None = None,
) -> bytes:
    """GET ``url`` over HTTPS and return the body of a 200 answer.

    The server's certificate and host name are verified (``context``: the
    system's default trust store unless given). Redirects are not followed:
    the caller checked this URL's host, not the one a redirect would name.
    Larger bodies than ``max_bytes`` and downloads slower than ``timeout``
    overall are refused. Raises :class:`FetchError`, or ``ValueError`` for a
    URL that is not ``https://`` (a caller's bug: callers check URLs first).

    Limits: name resolution is not covered by ``timeout`` (the system
    resolver's own applies), and environment proxy settings are honoured.
    """
    if not url.startswith("https://"):
        raise ValueError("fetch_https fetches https:// URLs only")
    # Imported here: urllib.request pulls in ssl, http.client and email, which
    # nothing on the request path of a provider without certificates needs.
    import http.client
    import ssl as ssl_module
    import urllib.error
    import urllib.request

    class RefuseRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: IO[bytes],
            code: int,
            msg: str,
            headers: email.message.Message,
            newurl: str,
        ) -> None:
            return None  # makes urllib raise HTTPError(3xx) instead of following it

    opener = urllib.request.build_opener(
        RefuseRedirects(),
        urllib.request.HTTPSHandler(context=context or ssl_module.create_default_context()),
    )
    request = urllib.request.Request(url, headers={"User-Agent": "bounce-middleware"})
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            if response.status != 200:
                raise FetchError(f"the server answered HTTP {response.status}")
            return _read_capped(response, max_bytes, deadline)
    except urllib.error.HTTPError as error:
        error.close()  # its response would otherwise be left open (a ResourceWarning)
        raise FetchError(f"the server answered HTTP {error.code}") from None
    except FetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        # Timeouts, TLS failures, resets, malformed HTTP: the class name says which
        # without echoing anything the remote end sent. URLError wraps the real one.
        cause = getattr(error, "reason", None) if isinstance(error, urllib.error.URLError) else None
        name = type(cause if isinstance(cause, BaseException) else error).__name__
        raise FetchError(f"fetching failed: {name}") from None


def _read_capped(response: Any, max_bytes: int, deadline: float) -> bytes:
    # The socket timeout applies per read; a server trickling one byte at a
    # time would never trip it, hence the overall deadline between reads.
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read1(16384)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"answer larger than {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise FetchError("download took longer than the timeout")
        chunks.append(chunk)
