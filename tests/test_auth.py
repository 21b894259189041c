"""Credentials: configuration mistakes refused by name, weak secrets warned about (issue 10)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bounce_middleware import BounceMiddleware, ConfigurationError
from bounce_middleware.auth import (
    EXAMPLE_SECRETS,
    MIN_PASSWORD_LENGTH,
    BasicAuth,
    credential_list,
    credential_warnings,
)
from bounce_middleware.providers import Postmark
from bounce_middleware.testing import basic_auth_header

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ROOT = Path(__file__).resolve().parent.parent
STRONG = "ops:Zq3-vT8w_Lr2yN6pKe0u"


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [])
    return [b""]


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (None, "credentials is None — is the environment variable that should hold them set?"),
        ([None], "credential 1 is None — is the environment variable set?"),
        ([STRONG, None], "credential 2 is None — is the environment variable set?"),
        ([("user", "pw")], 'credential 1 is a tuple, not a "user:password" string'),
        ([STRONG, 42], 'credential 2 is an int, not a "user:password" string'),
        ([b"user:password"], "credential 1 is a bytes"),
        (b"user:password", 'credentials must be a list of "user:password" strings, not a bytes'),
        (42, 'credentials must be a list of "user:password" strings, not an int'),
        (["nocolon-secret-value"], 'credential 1 must be "user:password"'),
        ([STRONG, ":only-a-secret-value"], 'credential 2 must be "user:password"'),
        (["user:\udcff-secret-value"], "credential 1 is not valid UTF-8 text"),
        ([], "no credentials configured"),
        ("   ", "no credentials configured"),
    ],
)
def test_configuration_mistakes_are_named(credentials: Any, message: str) -> None:
    for build in (BasicAuth, credential_list):
        with pytest.raises(ConfigurationError) as info:
            build(credentials)
        assert str(info.value) == message or str(info.value).startswith(message)
        assert "secret-value" not in str(info.value)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        BounceMiddleware(app, path="/b", credentials=credentials)


def test_a_one_shot_iterator_of_credentials_works() -> None:
    middleware = BounceMiddleware(app, path="/b", credentials=iter([STRONG]))
    route = middleware.routes["/b"]
    assert isinstance(route, Postmark)
    assert route.basic.auth.check(basic_auth_header(*STRONG.split(":", 1)))


def test_one_string_of_several_credentials() -> None:
    assert credential_list(f"{STRONG}\n  other:Another-long-password-1 ") == [
        STRONG,
        "other:Another-long-password-1",
    ]


# --- weak credentials are warned about -------------------------------------------------


def test_a_strong_credential_draws_no_warning() -> None:
    assert credential_warnings([STRONG]) == []


def test_a_short_password_draws_a_warning_naming_the_entry_not_the_secret() -> None:
    short = "x" * (MIN_PASSWORD_LENGTH - 1)
    [warning] = credential_warnings([STRONG, f"hooks:{short}"])
    assert warning.startswith("credential 2 (user 'hooks') has a password shorter than 16")
    assert short not in warning


@pytest.mark.parametrize("secret", sorted(EXAMPLE_SECRETS))
def test_every_published_example_secret_draws_a_warning(secret: str) -> None:
    [warning] = credential_warnings([f"postmark:{secret}"])
    assert "uses a password published in bounce-middleware's examples" in warning
    assert secret not in warning.replace("uses a password published", "")


def test_malformed_credentials_are_left_to_the_constructor() -> None:
    assert credential_warnings(None) == []
    assert credential_warnings([None]) == []


def test_the_middleware_logs_each_warning_once_at_construction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="bounce_middleware"):
        BounceMiddleware(app, path="/b", credentials=["postmark:s3cret", STRONG, "b:short"])
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.WARNING]
    assert "credential 1 (user 'postmark')" in messages[0][1]
    assert "credential 3 (user 'b')" in messages[1][1]
    text = " ".join(message for _, message in messages)
    assert "s3cret" not in text and "short" not in text.replace("shorter", "")


SHIPPED = ["README.md", "examples", "bounce_middleware/demo.py", "benchmarks"]


def test_example_secrets_cover_the_credentials_the_project_ships() -> None:
    # Every "user:password" credential written in the README, the examples, the demo and
    # the benchmarks: a reader may copy any of them into a deployment.
    pattern = re.compile(r"""(?:credentials?|CREDENTIALS)[^\n]*?["'\[]\s*["']?(\w+):([^"'\s\]]+)""")
    found: set[str] = set()
    for name in SHIPPED:
        path = ROOT / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            if file.suffix not in (".py", ".md", ".ini", ".txt", ".toml"):
                continue
            for match in pattern.finditer(file.read_text("utf-8", "replace")):
                password = match.group(2)
                if not password.startswith("{"):  # an f-string placeholder, not a secret
                    found.add(password)
    assert "s3cret" in found
    assert found <= EXAMPLE_SECRETS, found - EXAMPLE_SECRETS
