"""Resend's authentication: the Svix signature (published vector, CRLF bodies, several
values, rotation, the window both ways, the unbranded headers) and the configuration.

Requests are signed with the recipe in ``tests/test_provider_resend.py`` (hmac directly).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bounce_middleware import ConfigurationError, PayloadError
from bounce_middleware.errors import Unauthorized
from bounce_middleware.providers.resend import Resend
from bounce_middleware.request import post
from tests.test_provider_resend import (
    MSG_ID,
    NOW,
    PUBLISHED_BODY,
    PUBLISHED_ID,
    PUBLISHED_SECRET,
    PUBLISHED_SIGNATURE,
    PUBLISHED_TS,
    SECRET,
    authenticate,
    event,
    headers_for,
    provider,
    recipe,
)

# -- authentication ---------------------------------------------------------------------------


def test_the_published_svix_vector_verifies_at_its_time() -> None:
    headers = {
        "svix-id": PUBLISHED_ID,
        "svix-timestamp": PUBLISHED_TS,
        "svix-signature": PUBLISHED_SIGNATURE,
    }
    assert (
        recipe(
            base64.b64decode(PUBLISHED_SECRET.removeprefix("whsec_")),
            PUBLISHED_ID,
            PUBLISHED_TS,
            PUBLISHED_BODY,
        )
        == PUBLISHED_SIGNATURE
    )
    authenticate(PUBLISHED_BODY, headers, secret=PUBLISHED_SECRET, clock=lambda: 1614265330.0)
    # Its body is no Resend event: authentic, then refused by the parser (400, kept).
    with pytest.raises(PayloadError, match="field type is missing"):
        provider(secret=PUBLISHED_SECRET).parse(post(body=PUBLISHED_BODY, headers=headers))
    # Five minutes and one second later it is stale.
    with pytest.raises(Unauthorized, match="stale"):
        authenticate(PUBLISHED_BODY, headers, secret=PUBLISHED_SECRET, clock=lambda: 1614265631.0)


def test_a_body_signed_with_crlf_line_ends_verifies_byte_for_byte() -> None:
    body = json.dumps(event("email.sent"), indent=4).replace("\n", "\r\n").encode() + b"\r\n"
    authenticate(body, headers_for(body))
    with pytest.raises(Unauthorized, match="does not match"):
        authenticate(body.replace(b"\r\n", b"\n"), headers_for(body))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"svix-signature": recipe(b"another key", MSG_ID, str(int(NOW)), b"{}")}, "not match"),
        ({"svix-id": "msg_other"}, "does not match any configured secret"),
        ({"svix-id": None}, "missing svix-id header"),
        ({"svix-timestamp": None}, "missing svix-timestamp header"),
        ({"svix-signature": None}, "missing svix-signature header"),
        ({"svix-signature": "v1a,abc= v2,xyz="}, "no v1 signature"),
        ({"svix-timestamp": "yesterday"}, "not a Unix time"),
        ({"svix-timestamp": str(int(NOW) - 301)}, "stale: 301 s old, the window is 300 s"),
        ({"svix-timestamp": str(int(NOW) + 301)}, "301 s in the future"),
    ],
)
def test_unauthentic_requests_are_refused_with_the_check_that_failed(
    change: dict[str, str | None], reason: str
) -> None:
    body = json.dumps(event()).encode()
    headers: dict[str, Any] = {**headers_for(body), **change}
    headers = {name: value for name, value in headers.items() if value is not None}
    with pytest.raises(Unauthorized, match=reason):
        authenticate(body, headers)


def test_stale_and_future_timestamps_are_refused_before_the_body() -> None:
    # check_headers sees no body (the front has not read it yet).
    for offset, reason in ((-301, "stale"), (301, "in the future")):
        stamp = str(int(NOW) + offset)
        headers = {"svix-id": MSG_ID, "svix-timestamp": stamp, "svix-signature": "v1,AAAA"}
        with pytest.raises(Unauthorized, match=reason):
            provider().check_headers(post(headers=headers))
    headers = {"svix-id": MSG_ID, "svix-timestamp": str(int(NOW) - 299), "svix-signature": "v1,A"}
    provider().check_headers(post(headers=headers))  # in the window: the body is read next


def test_one_valid_value_among_several_in_the_signature_header_is_enough() -> None:
    body = json.dumps(event()).encode()
    headers = headers_for(body)
    good = headers["svix-signature"]
    other = recipe(b"the rotated-out key", MSG_ID, str(int(NOW)), body)
    headers["svix-signature"] = f"v1a,bm90LW91cnM= {other} v1,!!garbled!! {good}"
    authenticate(body, headers)
    headers["svix-signature"] = f"{other} v1,!!garbled!!"
    with pytest.raises(Unauthorized, match="does not match"):
        authenticate(body, headers)


@pytest.mark.parametrize("secrets", [["whsec_b2xkLXNlY3JldA==", SECRET], f"whsec_b2xk {SECRET}"])
def test_secrets_rotate_any_configured_one_verifies(secrets: Any) -> None:
    body = json.dumps(event()).encode()
    authenticate(body, headers_for(body), secret=secrets)
    with pytest.raises(Unauthorized):
        authenticate(body, headers_for(body), secret="whsec_b2xkLXNlY3JldA==")


def test_the_unbranded_webhook_headers_carry_the_same_scheme() -> None:
    body = json.dumps(event()).encode()
    headers = {name.replace("svix-", "webhook-"): v for name, v in headers_for(body).items()}
    authenticate(body, headers)
    [bounce] = provider().parse(post(body=body, headers=headers)).events
    assert bounce.id == MSG_ID and bounce.key == f"resend:{MSG_ID}"
    del headers["webhook-signature"]
    with pytest.raises(Unauthorized, match="missing webhook-signature header"):
        authenticate(body, headers)


def test_svix_headers_win_over_unbranded_ones() -> None:
    body = json.dumps(event()).encode()
    good = headers_for(body)
    unbranded = {name.replace("svix-", "webhook-"): v for name, v in good.items()}
    forged = {**unbranded, "svix-id": "msg_forged", "svix-timestamp": str(int(NOW))}
    forged["svix-signature"] = unbranded["webhook-signature"]
    with pytest.raises(Unauthorized, match="does not match"):
        authenticate(body, forged)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"secret": None}, "no secret"),
        ({"secret": "  "}, "no secret"),
        ({"secret": []}, "Resend: no Svix secret configured"),
        ({"secret": "whsec_!!!!"}, "Svix secret 1 is not"),
        ({"secret": "whsec_b2xk not-base64!"}, "Svix secret 2 is not"),
        ({"secret": [SECRET, "whsec_%%%"]}, "Svix secret 2 is not"),
        ({"tolerance": 0}, "tolerance must be a positive"),
        ({"tolerance": float("inf")}, "tolerance must be a positive"),
        ({"tolerance": "300"}, "tolerance must be a positive"),
    ],
)
def test_misconfiguration_fails_when_the_provider_is_built(
    options: dict[str, Any], reason: str
) -> None:
    options.setdefault("secret", SECRET)
    with pytest.raises(ConfigurationError, match=reason) as caught:
        Resend(**options)
    assert "whsec_%%%" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="no secret"):
        Resend()


def test_the_class_describes_itself_for_settings_and_the_receiver() -> None:
    resend = provider()
    assert (resend.name, resend.methods, resend.refuse_status, resend.retry_status) == (
        "resend",
        frozenset({"POST"}),
        400,
        None,
    )
    assert dict(Resend.options) == {"secret": "list", "tolerance": "float"}
    assert Resend(secret=SECRET, tolerance=60).tolerance == 60.0
