"""Reading a request body under a size cap: the declared length (both fronts), the WSGI body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import PayloadError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

_READ_CHUNK = 64 * 1024
# More significant digits than any real length (and int() refuses over 4300 of them).
_MAX_LENGTH_DIGITS = 18


class BodyTooLarge(Exception):
    """The body is over the configured limit (answered 413)."""


class BodyUnreadable(Exception):
    """``wsgi.input`` failed while being read (client gone, timeout); answered 400.

    ``cause`` names the exception's class, the only part safe to log.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def declared_length(value: str | None, limit: int) -> int | None:
    """The body length a ``Content-Length`` value declares; None for no (or an empty) value.

    Raises :class:`PayloadError` for anything but ASCII digits and
    :class:`BodyTooLarge` over ``limit``. Both fronts read the header here,
    so they answer any value alike.
    """
    if not value:
        return None
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (value.isascii() and value.isdigit()):
        raise PayloadError("Content-Length is not a number")
    # Leading zeros are not digits of size: "000...0" is 0, however many zeros.
    significant = value.lstrip("0")
    if len(significant) > _MAX_LENGTH_DIGITS:
        raise BodyTooLarge
    length = int(significant) if significant else 0
    if length > limit:
        raise BodyTooLarge
    return length


def read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    """Read the request body, never more than ``limit + 1`` bytes from ``wsgi.input``.

    Raises :class:`BodyTooLarge` over the limit, :class:`PayloadError` for a
    malformed ``Content-Length``, :class:`BodyUnreadable` when reading fails.
    """
    stream = environ["wsgi.input"]
    length = declared_length(environ.get("CONTENT_LENGTH"), limit)
    if length is None:
        if not environ.get("wsgi.input_terminated"):
            # PEP 3333: without Content-Length there is no body we may read.
            return b""
        # Chunked upload: the server marks the end of input; read past the cap to notice it.
        length = limit + 1
    chunks = []
    remaining = length
    try:
        while remaining > 0:
            chunk = stream.read(min(remaining, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except Exception as exc:
        # Servers raise their own classes here (OSError, ValueError, gunicorn's
        # NoMoreData, waitress's ClientDisconnected...): any of them means no body.
        raise BodyUnreadable(type(exc).__name__) from exc
    body = b"".join(chunks)
    if len(body) > limit:
        raise BodyTooLarge
    return body
