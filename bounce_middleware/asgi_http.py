"""The ASGI front's HTTP plumbing: the route's path, headers and URL from a scope; the answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from .answer import Answer

# The ASGI 3 callables, typed as Starlette types them (so add_middleware type-checks).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("bounce_middleware")


def route_path(scope: Scope) -> str:
    """The path a route matches: ``path`` without the ``root_path`` the app is mounted at.

    Servers put the mount point in front of ``path`` (uvicorn since 0.26;
    Starlette's ``Mount``) or leave it out (older ones): both match.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    return path[len(root) :] if root and _under(path, root) else path


def _under(path: str, root: str) -> bool:
    return path.startswith(root) and path[len(root) : len(root) + 1] == "/"


def request_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers by lower-case name, latin-1 decoded.

    A repeated header is joined with ``,`` as WSGI servers (gunicorn, asgiref's
    bridge) join them, so both fronts hand providers the same value.
    """
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = headers.get(key)
        headers[key] = text if previous is None else f"{previous},{text}"
    return headers


def request_url(scope: Scope, headers: Mapping[str, str]) -> str:
    """The URL the provider called (Mandrill signs it), rebuilt as PEP 3333 does."""
    scheme: str = scope.get("scheme") or "http"
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = ""
        if server is not None:
            name, port = server[0], server[1]
            host = (
                name
                if port is None or port == (443 if scheme == "https" else 80)
                else (f"{name}:{port}")
            )
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and not _under(path, root):
        path = root + path
    query: bytes = scope.get("query_string") or b""
    url = f"{scheme}://{host}{path}"
    return f"{url}?{query.decode('latin-1')}" if query else url


async def send_answer(answer: Answer, send: Send, *, head: bool = False) -> None:
    """Send an :class:`Answer` as ``http.response.start`` and ``.body`` (no body for HEAD)."""
    headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.headerlist()]
    try:
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else answer.body})
    except OSError as exc:
        # ASGI: sending on a closed connection raises a subclass of OSError. The
        # answer is settled in the store already; the provider's retry finds it done.
        logger.warning(
            "bounce webhook: the client left before the %d answer (%s)",
            answer.status,
            type(exc).__name__,
        )
