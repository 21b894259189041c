"""HeaderAuth: Basic credentials and/or bearer tokens, as SparkPost and Brevo send them."""

from __future__ import annotations

import base64
import logging

import pytest

from bounce_middleware.errors import ConfigurationError, Unauthorized
from bounce_middleware.header_auth import HeaderAuth, bearer_token, token_list
from bounce_middleware.request import post

TOKEN = "tok-3b1f0c9a7d2e4f6a8b0c"
OTHER = "tok-9e8d7c6b5a4f3e2d1c0b"
CREDENTIAL = "hooks:8hJ2kLp0qRsTuVwX"


def basic(credential: str) -> str:
    return "Basic " + base64.b64encode(credential.encode()).decode()


def check(auth: HeaderAuth, headers: dict[str, str]) -> bool:
    try:
        auth.check(post("/hook", b"{}", headers))
    except Unauthorized:
        return False
    return True


def test_neither_credentials_nor_tokens_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Brevo: no credentials and no tokens"):
        HeaderAuth(provider="Brevo")


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (None, "tokens is None"),
        ([], "no tokens configured"),
        ("", "no tokens configured"),
        ([42], "token 1 is an int"),
        (["ok-token-0123456789", "has space"], "token 2 must be printable ASCII"),
        (["tökén-0123456789"], "token 1 must be printable ASCII"),
        (b"bytes", "must be a list of strings"),
    ],
)
def test_bad_tokens_are_named_by_position_never_by_value(tokens: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        token_list(tokens)
    assert "0123456789" not in str(info.value)


def test_one_string_holds_several_tokens() -> None:
    assert token_list(f"{TOKEN} {OTHER}") == [TOKEN.encode(), OTHER.encode()]


def test_a_bearer_token_is_accepted_and_a_wrong_one_refused_with_a_bearer_challenge() -> None:
    auth = HeaderAuth(tokens=[TOKEN, OTHER])
    assert check(auth, {"Authorization": f"Bearer {TOKEN}"})
    assert check(auth, {"Authorization": f"bearer  {OTHER} "})
    assert not check(auth, {"Authorization": f"Bearer {TOKEN}x"})
    assert not check(auth, {"Authorization": TOKEN})
    assert not check(auth, {"Authorization": basic(CREDENTIAL)})
    assert not check(auth, {})
    with pytest.raises(Unauthorized) as info:
        auth.check(post("/hook", b"", {"Authorization": "Bearer wrong"}))
    assert info.value.challenge == 'Bearer realm="bounce-middleware"'
    assert TOKEN not in info.value.reason


def test_basic_credentials_alone() -> None:
    auth = HeaderAuth(credentials=[CREDENTIAL], realm="hooks")
    assert check(auth, {"Authorization": basic(CREDENTIAL)})
    assert not check(auth, {"Authorization": basic("hooks:wrong-password-123")})
    assert not check(auth, {"Authorization": f"Bearer {TOKEN}"})
    assert auth.challenge.startswith('Basic realm="hooks"')


def test_with_both_configured_either_is_accepted() -> None:
    auth = HeaderAuth(credentials=[CREDENTIAL], tokens=[TOKEN])
    assert check(auth, {"Authorization": basic(CREDENTIAL)})
    assert check(auth, {"Authorization": f"Bearer {TOKEN}"})
    assert not check(auth, {"Authorization": "Bearer " + CREDENTIAL})


def test_a_token_header_carries_the_bare_token() -> None:
    auth = HeaderAuth(tokens=[TOKEN], token_headers=("X-MessageSystems-Webhook-Token",))
    assert check(auth, {"X-MessageSystems-Webhook-Token": TOKEN})
    assert not check(auth, {"X-MessageSystems-Webhook-Token": OTHER})
    assert not check(auth, {"X-MessageSystems-Webhook-Token": "tök"})
    assert not check(HeaderAuth(tokens=[TOKEN]), {"X-MessageSystems-Webhook-Token": TOKEN})


def test_a_request_is_checked_once() -> None:
    auth = HeaderAuth(tokens=[TOKEN])
    request = post("/hook", b"", {"Authorization": f"Bearer {TOKEN}"})
    auth.check(request)
    assert request.memo["header-auth"] is auth


def test_bearer_token_reads_only_the_bearer_scheme() -> None:
    assert bearer_token(None) == b""
    assert bearer_token("Bearer") == b""
    assert bearer_token("Basic abc") == b""
    assert bearer_token("Bearer ünï") == b""
    assert bearer_token("BEARER abc") == b"abc"


def test_short_or_published_tokens_draw_a_warning_naming_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bounce_middleware"):
        HeaderAuth(tokens=["short", TOKEN, "long-random-password"], provider="SparkPost")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "SparkPost token 1" in lines[0] and "SparkPost token 3" in lines[1]
    assert not any("long-random-password" in line or TOKEN in line for line in lines)


@pytest.mark.parametrize("realm", ['a"b', "a\\b", 3])
def test_a_realm_that_would_break_the_challenge_is_refused_for_tokens_too(realm: object) -> None:
    with pytest.raises(ConfigurationError, match="realm must not contain"):
        HeaderAuth(tokens=[TOKEN], realm=realm)  # type: ignore[arg-type]
