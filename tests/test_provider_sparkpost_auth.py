"""SparkPost's construction and authentication: Basic credentials, bearer tokens, the legacy
token header, each checked before the body is read, and the flat settings that build one."""

from __future__ import annotations

import pytest

from bounce_middleware import ConfigurationError
from bounce_middleware.errors import Unauthorized
from bounce_middleware.providers.base import Provider
from bounce_middleware.providers.sparkpost import TOKEN_HEADER, SparkPost
from bounce_middleware.request import WebhookRequest, post
from bounce_middleware.samples.sparkpost import PING, sparkpost_headers, sparkpost_request
from bounce_middleware.settings import parse_settings

TOKEN = "sp-token-5c1d7e2f9a0b4c6d8e"
OTHER_TOKEN = "sp-token-0f9e8d7c6b5a4f3e2d"
CREDENTIALS = "sparkpost:sp-basic-password-7Hq2"
DOTTED = "bounce_middleware.providers.sparkpost:SparkPost"


def request(
    *, token: str | None = None, credentials: str | None = None, legacy: bool = False
) -> WebhookRequest:
    """A ping carrying ``sparkpost_headers(...)``, as received (names lower-cased)."""
    headers, body = sparkpost_request(PING, token=token, credentials=credentials, legacy=legacy)
    return post("/hooks/sparkpost", body, headers)


def accepted(provider: SparkPost, req: WebhookRequest) -> bool:
    """Whether both checks pass; they must agree."""
    outcomes = []
    for check in (provider.check_headers, provider.authenticate):
        fresh = post(req.path, req.body, req.headers)  # no memo from the other check
        try:
            check(fresh)
        except Unauthorized:
            outcomes.append(False)
        else:
            outcomes.append(True)
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def test_the_class_keeps_the_provider_protocol() -> None:
    provider = SparkPost(tokens=[TOKEN])
    assert isinstance(provider, Provider)
    assert provider.name == "sparkpost"
    assert provider.methods == frozenset({"POST"})
    assert (provider.refuse_status, provider.retry_status) == (400, None)
    assert SparkPost.options == {"credentials": "credentials", "tokens": "list", "realm": "str"}


def test_neither_credentials_nor_tokens_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="SparkPost: no credentials and no tokens"):
        SparkPost()
    # An unset environment variable inside a list is refused, never ignored.
    with pytest.raises(ConfigurationError, match="token 1 is a NoneType"):
        SparkPost(tokens=[None])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="no tokens configured"):
        SparkPost(credentials=[CREDENTIALS], tokens="")


def test_a_bearer_token_from_the_oauth_token_url_is_accepted() -> None:
    provider = SparkPost(tokens=[TOKEN, OTHER_TOKEN])
    assert accepted(provider, request(token=TOKEN))
    assert accepted(provider, request(token=OTHER_TOKEN))  # rotation
    assert not accepted(provider, request(token=TOKEN + "x"))
    assert not accepted(provider, request(credentials=CREDENTIALS))
    assert not accepted(provider, request())


def test_the_legacy_token_header_carries_the_bare_token() -> None:
    provider = SparkPost(tokens=[TOKEN])
    assert accepted(provider, request(token=TOKEN, legacy=True))
    assert not accepted(provider, request(token=OTHER_TOKEN, legacy=True))
    bearer_in_header = post("/h", b"[]", {TOKEN_HEADER: f"Bearer {TOKEN}"})
    assert not accepted(provider, bearer_in_header)


def test_basic_credentials_are_accepted() -> None:
    provider = SparkPost(credentials=[CREDENTIALS])
    assert accepted(provider, request(credentials=CREDENTIALS))
    assert not accepted(provider, request(credentials="sparkpost:wrong-password-123"))
    assert not accepted(provider, request(token=TOKEN))


def test_with_both_configured_either_is_accepted() -> None:
    provider = SparkPost(credentials=[CREDENTIALS], tokens=[TOKEN])
    assert accepted(provider, request(credentials=CREDENTIALS))
    assert accepted(provider, request(token=TOKEN))
    assert accepted(provider, request(token=TOKEN, legacy=True))
    assert not accepted(provider, request(token=OTHER_TOKEN))


def test_the_challenge_is_basic_with_credentials_and_bearer_with_tokens_only() -> None:
    for provider, challenge in (
        (SparkPost(credentials=[CREDENTIALS], realm="hooks"), 'Basic realm="hooks"'),
        (SparkPost(tokens=[TOKEN], realm="hooks"), 'Bearer realm="hooks"'),
    ):
        with pytest.raises(Unauthorized) as info:
            provider.check_headers(request())
        assert (info.value.challenge or "").startswith(challenge)
        assert TOKEN not in info.value.reason


def test_headers_helper_refuses_both_or_malformed_credentials() -> None:
    with pytest.raises(ValueError, match="not both"):
        sparkpost_headers(token=TOKEN, credentials=CREDENTIALS)
    with pytest.raises(ValueError, match="user:password"):
        sparkpost_headers(credentials="no-colon")
    assert "Authorization" not in sparkpost_headers()


def test_flat_settings_build_a_route_from_the_options_table() -> None:
    routes = parse_settings(
        {
            "bounce.routes": f"/hooks/sparkpost {DOTTED}",
            "bounce.sparkpost.tokens": f"{TOKEN} {OTHER_TOKEN}",
            "bounce.sparkpost.credentials": CREDENTIALS,
            "bounce.sparkpost.realm": "sparkpost-hooks",
        }
    )["routes"]
    provider = routes["/hooks/sparkpost"]
    assert isinstance(provider, SparkPost)
    assert accepted(provider, request(token=OTHER_TOKEN))
    assert accepted(provider, request(credentials=CREDENTIALS))
    assert provider.auth.challenge.startswith('Basic realm="sparkpost-hooks"')
