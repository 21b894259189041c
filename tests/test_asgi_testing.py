"""The testing helpers with httpx's ASGI transport, around Starlette and FastAPI apps.

What the README's "Testing your application" shows for ASGI: the same
``bounce_middleware.testing`` payloads, ``auth_headers`` and signers,
posted with ``httpx.AsyncClient(transport=httpx.ASGITransport(app))``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bounce_middleware import Bounce, MemoryStore
from bounce_middleware.asgi import BounceMiddleware
from bounce_middleware.providers import Postmark, SendGrid
from bounce_middleware.testing import (
    SENDGRID_TEST_PUBLIC_KEY,
    auth_headers,
    postmark_bounce,
    postmark_delivery,
    sendgrid_event,
    sign_sendgrid_request,
)

PASSWORD = "tests-only-long-webhook-password"


def routes() -> dict[str, Any]:
    return {
        "/hooks/postmark": Postmark(credentials=[f"postmark:{PASSWORD}"]),
        "/hooks/sendgrid": SendGrid(public_key=SENDGRID_TEST_PUBLIC_KEY),
    }


async def exercise(app: Any) -> list[tuple[int, str]]:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        replies = [
            await client.post(
                "/hooks/postmark",
                json=postmark_bounce("HardBounce", email="ann@example.com"),
                headers=auth_headers("postmark", PASSWORD),
            ),
            await client.post(
                "/hooks/postmark",
                json=postmark_delivery(),
                headers=auth_headers("postmark", PASSWORD),
            ),
            await client.post(
                "/hooks/postmark", json=postmark_bounce(), headers=auth_headers("postmark", "wrong")
            ),
        ]
        headers, body = sign_sendgrid_request([sendgrid_event("hard", email="bob@example.com")])
        replies.append(await client.post("/hooks/sendgrid", content=body, headers=headers))
        replies.append(await client.get("/page"))
    return [(r.status_code, r.text) for r in replies]


EXPECTED = [
    (200, "accepted\n"),
    (200, "ignored: Delivery records are not bounces\n"),
    (401, "authentication required\n"),
    (200, "accepted\n"),
    (200, "the page"),
]


async def the_page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the page")


def test_starlette_add_middleware_and_httpx() -> None:
    seen: list[Bounce] = []
    app = Starlette(routes=[Route("/page", the_page)])
    app.add_middleware(BounceMiddleware, routes=routes(), handlers=[seen.append])
    assert asyncio.run(exercise(app)) == EXPECTED
    assert [b.email for b in seen] == ["ann@example.com", "bob@example.com"]


def test_fastapi_add_middleware_with_an_async_handler_and_a_store() -> None:
    seen: list[str] = []

    async def on_bounce(bounce: Bounce) -> None:
        seen.append(bounce.email)

    app = FastAPI()
    app.get("/page", response_class=PlainTextResponse)(lambda: "the page")
    store = MemoryStore()
    app.add_middleware(BounceMiddleware, routes=routes(), handlers=[on_bounce], store=store)
    assert asyncio.run(exercise(app)) == EXPECTED
    assert seen == ["ann@example.com", "bob@example.com"]
    assert len(store.records(limit=None)) == 2
