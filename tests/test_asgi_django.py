"""The Django adapter under ASGI: get_asgi_application() wrapped, through httpx's ASGI transport.

The same settings as ``tests/test_django.py`` (a custom user model whose
``EMAIL_FIELD`` is ``contact_email``): a bounce is recorded by the default
store, the transactional handler leaves a notice, and Django, served by
its own ASGI handler behind the middleware, shows it once.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from bounce_middleware.adapters.django.asgi import get_asgi_application
from bounce_middleware.adapters.django.handlers import NAME as NOTIFY
from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.asgi import BounceMiddleware
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.django_settings import WEBHOOK_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/postmark/bounce"


@pytest.fixture
def ann() -> Any:
    return get_user_model().objects.create_user(
        username="ann",
        password="ann-pw",
        contact_email="Ann@Example.com",
        email="ann-unrelated@example.org",
    )


def warnings_in(html: str) -> list[str]:
    return re.findall(r'<li class="warning">(.*?)</li>', html, re.S)


async def _bounce_then_pages(app: Any, payload: dict[str, Any]) -> tuple[list[int], list[str]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = auth_headers("postmark", WEBHOOK_PASSWORD)
        first = await client.post(PATH, content=json.dumps(payload), headers=headers)
        again = await client.post(PATH, content=json.dumps(payload), headers=headers)
        login = await client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert token is not None
        signed_in = await client.post(
            "/login/",
            data={"username": "ann", "password": "ann-pw", "csrfmiddlewaretoken": token[1]},
            follow_redirects=True,
        )
        later = await client.get("/")
    statuses = [first.status_code, again.status_code, signed_in.status_code]
    texts = [first.text, again.text, signed_in.text, later.text]
    return statuses, texts


def test_a_bounce_is_recorded_once_and_its_notice_shown_once(ann: Any) -> None:
    app = get_asgi_application()
    assert isinstance(app, BounceMiddleware)
    payload = postmark_bounce(email="ann@example.com")
    statuses, texts = asyncio.run(_bounce_then_pages(app, payload))
    assert statuses == [200, 200, 200]
    assert texts[:2] == ["accepted\n", "already processed\n"]
    event = BounceEvent.objects.get()
    assert (event.key, event.finished) == (f"postmark:{payload['ID']}", True)
    assert event.completed_handlers == {NOTIFY}
    [warning] = warnings_in(texts[2])
    assert "ann@example.com" in warning
    assert warnings_in(texts[3]) == []
    assert BounceNotice.objects.get().shown_at is not None


def test_other_requests_and_lifespan_reach_django(ann: Any) -> None:
    app = get_asgi_application()

    async def main() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return (await c.get("/login/")).status_code

    assert asyncio.run(main()) == 200


def test_wrong_credentials_are_refused_and_nothing_is_stored(ann: Any) -> None:
    async def main() -> int:
        transport = httpx.ASGITransport(app=get_asgi_application())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            answer = await c.post(
                PATH,
                content=json.dumps(postmark_bounce(email="ann@example.com")),
                headers=auth_headers("postmark", "wrong"),
            )
            return answer.status_code

    assert asyncio.run(main()) == 401
    assert not BounceEvent.objects.exists()


def test_wrap_needs_the_app_installed() -> None:
    installed = [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "tests.django_app",
    ]
    with (
        override_settings(INSTALLED_APPS=installed),
        pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"),
    ):
        get_asgi_application()
