"""An ``async def`` handler on the WSGI front is awaited, never taken as done unrun."""

from __future__ import annotations

import functools
from typing import Any

from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore
from bounce_middleware.providers import Postmark
from bounce_middleware.testing import auth_headers, postmark_bounce

CREDENTIAL = ("postmark", "a-long-webhook-password-7")


def site(environ: object, start_response: object) -> list[bytes]:
    raise AssertionError("the webhook route must not reach the application")


def post(app: TestApp[BounceMiddleware], status: int) -> None:
    payload = postmark_bounce(email="ann@example.com", ID=77)
    app.post_json("/pm", payload, headers=auth_headers(*CREDENTIAL), status=status)


def test_an_async_handler_runs_and_a_failing_one_is_retried() -> None:
    ran: list[str] = []
    failures = [RuntimeError("the user store is down")]

    async def flag(bounce: Bounce) -> None:
        if failures:
            raise failures.pop()
        ran.append(bounce.key)

    store = MemoryStore()
    middleware = BounceMiddleware(
        site, routes={"/pm": Postmark(credentials=[":".join(CREDENTIAL)])}, store=store
    )
    middleware.add_handler(flag)
    app = TestApp(middleware)
    post(app, 500)  # it raised: not completed, Postmark retries
    assert ran == [] and not store.records()[0].finished
    post(app, 200)
    assert ran == ["postmark:77"]
    assert store.records()[0].completed == {f"{__name__}.{flag.__qualname__}"}
    post(app, 200)  # already processed: not run again
    assert ran == ["postmark:77"]


def test_a_plain_function_returning_a_coroutine_is_awaited_too() -> None:
    ran: list[str] = []

    async def flag(bounce: Bounce) -> None:
        ran.append(bounce.key)

    @functools.wraps(flag)
    def decorated(bounce: Bounce) -> Any:  # a decorator that does not know async def
        return flag(bounce)

    store = MemoryStore()
    middleware = BounceMiddleware(
        site, routes={"/pm": Postmark(credentials=[":".join(CREDENTIAL)])}, store=store
    )
    middleware.add_handler(decorated, name="decorated")
    post(TestApp(middleware), 200)
    assert ran == ["postmark:77"]
    assert store.records()[0].completed == {"decorated"}
