"""A BounceMiddleware over a store, and handlers that count their calls, for the store tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from webtest import TestApp

from bounce_middleware import Bounce, BounceKind, BounceMiddleware, Store
from bounce_middleware.testing import auth_headers

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "store-tests-webhook-password"
AUTH = auth_headers(USER, PASSWORD)
LEASE = 60.0


def make_bounce(
    event_id: int | str,
    email: str = "ann@example.com",
    kind: BounceKind = BounceKind.HARD,
    body: bytes = b"{}",
) -> Bounce:
    """A hard bounce built by hand, keyed ``postmark:<event_id>``."""
    return Bounce(
        provider="postmark", id=str(event_id), email=email, kind=kind, type="HardBounce", body=body
    )


def downstream(environ: Any, start_response: Any) -> list[bytes]:
    """The application behind the middleware."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


class Audit:
    """A handler that logs every call; its default name is stable across restarts."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, bounce: Bounce) -> None:
        self.calls.append(bounce.key)


class Flaky(Audit):
    """Fails until ``fixed`` is set, like a handler whose database is down."""

    fixed = False

    def __call__(self, bounce: Bounce) -> None:
        super().__call__(bounce)
        if not self.fixed:
            raise RuntimeError("the user database is down")


def make_app(store: Store, *handlers: Callable[[Bounce], object], **options: Any) -> TestApp:
    """The middleware on ``PATH`` with ``store`` and ``handlers``, under WebTest."""
    return TestApp(
        BounceMiddleware(
            downstream,
            path=PATH,
            credentials=[f"{USER}:{PASSWORD}"],
            handlers=handlers,
            store=store,
            **options,
        )
    )


def post(app: TestApp, payload: dict[str, Any], status: int) -> Any:
    """Deliver ``payload`` as Postmark does, expecting ``status``."""
    return app.post(
        PATH,
        json.dumps(payload),
        headers={**AUTH, "Content-Type": "application/json"},
        status=status,
    )
