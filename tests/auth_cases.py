"""The shared Basic-auth test suite: every adapter's tests run these cases.

Usage in an adapter's test module::

    @pytest.mark.parametrize("case", AUTH_CASES, ids=str)
    def test_auth(case, testapp):
        assert_auth_case(testapp, "/postmark/bounce", case, "postmark", "s3cret")
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webtest import TestApp

from bounce_middleware.testing import basic_auth_header, postmark_bounce


def _b64(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class AuthCase:
    """One Authorization header (built from the right credentials) and the status it gets."""

    name: str
    header: Callable[[str, str], str | None]
    status: int

    def __str__(self) -> str:
        return self.name


AUTH_CASES: list[AuthCase] = [
    AuthCase("valid", lambda u, p: basic_auth_header(u, p), 200),
    AuthCase(
        "valid-lowercase-scheme",
        lambda u, p: basic_auth_header(u, p).replace("Basic", "basic"),
        200,
    ),
    AuthCase("missing", lambda u, p: None, 401),
    AuthCase("empty", lambda u, p: "", 401),
    AuthCase("scheme-only", lambda u, p: "Basic", 401),
    AuthCase("scheme-and-space", lambda u, p: "Basic ", 401),
    AuthCase(
        "bearer-scheme",
        lambda u, p: "Bearer " + base64.b64encode(f"{u}:{p}".encode()).decode(),
        401,
    ),
    AuthCase("wrong-password", lambda u, p: basic_auth_header(u, p + "x"), 401),
    AuthCase("wrong-user", lambda u, p: basic_auth_header(u + "x", p), 401),
    AuthCase("password-prefix", lambda u, p: basic_auth_header(u, p[:-1]), 401),
    AuthCase("empty-password", lambda u, p: basic_auth_header(u, ""), 401),
    AuthCase("swapped", lambda u, p: basic_auth_header(p, u), 401),
    AuthCase("no-colon", lambda u, p: _b64(f"{u}{p}".encode()), 401),
    AuthCase("bad-base64", lambda u, p: "Basic !!!not-base64!!!", 401),
    AuthCase("truncated-base64", lambda u, p: basic_auth_header(u, p)[:-1], 401),
    AuthCase("non-utf8", lambda u, p: _b64(u.encode() + b":\xff\xfe" + p.encode()), 401),
    AuthCase("latin1-encoded", lambda u, p: _b64(f"{u}:{p}é".encode("latin-1")), 401),
    AuthCase("trailing-garbage", lambda u, p: basic_auth_header(u, p) + " extra", 401),
    AuthCase("null-byte", lambda u, p: _b64(f"{u}:{p}\x00".encode()), 401),
]


def assert_auth_case(
    testapp: TestApp[Any], path: str, case: AuthCase, user: str, password: str
) -> None:
    """Post a valid Postmark bounce with ``case``'s header and check the answer."""
    header = case.header(user, password)
    headers = {} if header is None else {"Authorization": header}
    response = testapp.post(
        path,
        json.dumps(postmark_bounce(email="nobody-here@example.com")),
        headers={**headers, "Content-Type": "application/json"},
        expect_errors=True,
    )
    assert response.status_int == case.status, (case.name, response.status, response.text)
    if case.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert response.content_type == "text/plain"
