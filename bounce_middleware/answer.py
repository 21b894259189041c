"""The answer to a bounce-path request, and the answers that never change."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webob import Response

_PLAIN_TEXT = ("Content-Type", "text/plain; charset=utf-8")


class Answer:
    """The answer to a bounce-path request: a status and a one-line ``text/plain`` reason.

    Public, read-only: :meth:`BounceMiddleware.process
    <bounce_middleware.BounceMiddleware.process>` and ``dispatch`` return one, so
    code that drives the middleware itself (a replay, another front) can read
    ``status``, ``reason`` and ``headers``, or turn it into a WSGI answer
    (``status_line``, :meth:`headerlist`, ``body``) or a WebOb response.
    Everything WSGI needs is computed once, so the common answers are module
    constants that cost nothing per request.
    """

    __slots__ = ("status", "reason", "headers", "status_line", "body", "_headerlist")

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        #: The HTTP status code, e.g. ``200``.
        self.status = status
        #: One line saying why, safe to send back (never quotes the body).
        self.reason = reason
        #: Headers beyond Content-Type and Content-Length (``Retry-After``, ``Allow``...).
        self.headers = headers
        #: ``"200 OK"``, as WSGI's ``start_response`` wants it.
        self.status_line = f"{status} {HTTPStatus(status).phrase}"
        #: The response body: the reason and a newline, UTF-8.
        self.body = (reason + "\n").encode("utf-8")
        self._headerlist = (_PLAIN_TEXT, ("Content-Length", str(len(self.body))), *headers)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.reason!r})"

    def headerlist(self) -> list[tuple[str, str]]:
        """Content-Type, Content-Length and the answer's own headers (a new list)."""
        return list(self._headerlist)

    def to_response(self) -> Response:
        """The same answer as a WebOb response."""
        # Imported here: WebOb takes ~30 ms to import, and the WSGI path never needs it.
        from webob import Response

        return Response(status=self.status_line, headerlist=self.headerlist(), body=self.body)


ACCEPTED = Answer(200, "accepted")
ALREADY_PROCESSED = Answer(200, "already processed")
HANDLER_FAILED = Answer(500, "a handler failed; the event will be retried")
METHOD_NOT_ALLOWED = Answer(405, "only POST is allowed here", (("Allow", "POST"),))
UNREADABLE_BODY = Answer(400, "could not read the request body")
