"""Mailgun authentication: the signature block, the window, replays, rotation, legacy posts."""

from __future__ import annotations

import inspect
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from bounce_middleware import ConfigurationError, PayloadError
from bounce_middleware.errors import Unauthorized
from bounce_middleware.providers import PROVIDERS
from bounce_middleware.providers.mailgun import Mailgun
from bounce_middleware.request import WebhookRequest, post
from bounce_middleware.testing import basic_auth_header
from tests.test_provider_mailgun import KEY, NOW, TOKEN, body_of, event, provider, recipe, request

# The published vector (symfony/mailgun-mailer's tests; providers.md, "Mailgun").
PUBLISHED_KEY = "key-0p6mqbf74lb20gzq9f4dhpn9rg3zyk26"
PUBLISHED = {
    "timestamp": "1661590666",
    "token": "fff0ebc59c0516f4ce0823212a2f45e5c67814420b99fe558b",
    "signature": "a0cd251821d8fd56a2130b541becc8e441023574e602fe9829a9ab9fbfdea33f",
}


def refused(mailgun: Mailgun, incoming: WebhookRequest) -> str:
    with pytest.raises(Unauthorized) as info:
        mailgun.authenticate(incoming)
    assert not info.value.keep
    return info.value.reason


def test_the_published_vector_verifies() -> None:
    body = json.dumps({"signature": PUBLISHED, "event-data": event()}).encode()
    mailgun = Mailgun(signing_key=PUBLISHED_KEY, clock=lambda: 1661590666.0 + 60)
    incoming = request(body)
    mailgun.authenticate(incoming)
    assert mailgun.parse(incoming).events[0].kind == "hard"


def test_the_published_vector_with_another_key_is_refused() -> None:
    body = json.dumps({"signature": PUBLISHED, "event-data": event()}).encode()
    mailgun = Mailgun(signing_key=KEY, clock=lambda: 1661590666.0)
    assert "does not match" in refused(mailgun, request(body))


def test_a_wrong_signature_is_refused() -> None:
    data = json.loads(body_of(event()))
    data["signature"]["signature"] = recipe(KEY, "1700000001", TOKEN)
    assert "does not match" in refused(provider(), request(json.dumps(data).encode()))


def test_a_changed_token_is_refused() -> None:
    data = json.loads(body_of(event()))
    data["signature"]["token"] = "b" * 50
    assert "does not match" in refused(provider(), request(json.dumps(data).encode()))


def test_a_stale_timestamp_is_refused_even_with_a_good_signature() -> None:
    ten_hours_ago = str(int(NOW) - 10 * 3600)
    assert "stale" in refused(provider(), request(body_of(event(), timestamp=ten_hours_ago)))


def test_a_retry_eight_hours_later_is_still_within_the_window() -> None:
    eight_hours_ago = str(int(NOW) - 8 * 3600)
    provider().authenticate(request(body_of(event(), timestamp=eight_hours_ago)))


def test_max_age_sets_the_window() -> None:
    a_minute_ago = str(int(NOW) - 60)
    mailgun = provider(max_age=30)
    assert "stale" in refused(mailgun, request(body_of(event(), timestamp=a_minute_ago)))


def test_a_timestamp_far_in_the_future_is_refused() -> None:
    later = str(int(NOW) + 3600)
    assert "future" in refused(provider(), request(body_of(event(), timestamp=later)))


def test_a_replayed_token_is_refused() -> None:
    mailgun = provider()
    body = body_of(event())
    mailgun.authenticate(request(body))
    assert "already used" in refused(mailgun, request(body))
    # The token, not the body: another event signed with the same block is a replay too.
    assert "already used" in refused(mailgun, request(body_of(event("complained"))))


@pytest.mark.parametrize("status", [500, 503, 401, 405])
def test_a_token_whose_delivery_failed_is_accepted_again(status: int) -> None:
    mailgun = provider()
    first = request(body_of(event()))
    mailgun.authenticate(first)
    mailgun.answered(first, status)
    retry = request(first.body)
    mailgun.authenticate(retry)
    mailgun.answered(retry, 200)
    assert "already used" in refused(mailgun, request(first.body))


@pytest.mark.parametrize("status", [200, 406])
def test_a_final_answer_keeps_the_token_spent(status: int) -> None:
    # Mailgun never resends after 200 or 406: a copy is a replay.
    mailgun = provider()
    first = request(body_of(event()))
    mailgun.authenticate(first)
    mailgun.answered(first, status)
    assert "already used" in refused(mailgun, request(first.body))


def test_a_refused_replay_does_not_free_the_token_it_replayed() -> None:
    mailgun = provider()
    accepted = request(body_of(event()))
    mailgun.authenticate(accepted)
    mailgun.answered(accepted, 200)
    replay = request(accepted.body)
    refused(mailgun, replay)
    mailgun.answered(replay, 401)  # the receiver reports every answer
    assert "already used" in refused(mailgun, request(accepted.body))


def test_each_provider_has_its_own_token_memory() -> None:
    body = body_of(event())
    provider().authenticate(request(body))
    provider().authenticate(request(body))


def test_rotation_accepts_every_configured_key() -> None:
    mailgun = provider(signing_key=["old-key", KEY])
    mailgun.authenticate(request(body_of(event(), key="old-key", token="1" * 50)))
    mailgun.authenticate(request(body_of(event(), key=KEY, token="2" * 50)))
    assert "does not match" in refused(
        mailgun, request(body_of(event(), key="third-key", token="3" * 50))
    )


def test_keys_in_one_string_are_whitespace_separated_and_stripped() -> None:
    mailgun = provider(signing_key=f" old-key\n{KEY}\n")
    mailgun.authenticate(request(body_of(event(), key="old-key", token="1" * 50)))
    mailgun.authenticate(request(body_of(event(), key=KEY, token="2" * 50)))
    provider(signing_key=[KEY + "\n"]).authenticate(request(body_of(event(), token="3" * 50)))


@pytest.mark.parametrize("keys", [None, "", "   ", [], [""], [KEY, "  "], [KEY, None], 42])
def test_no_usable_signing_key_fails_when_built(keys: Any) -> None:
    with pytest.raises(ConfigurationError, match="Mailgun signing key"):
        Mailgun(signing_key=keys)


def test_a_subaccount_event_verifies_with_the_parent_key() -> None:
    data = json.loads(body_of(event(), key="subaccount-key"))
    signed = data["signature"]
    signed["parent-signature"] = recipe("parent-key", signed["timestamp"], signed["token"])
    provider(signing_key="parent-key").authenticate(request(json.dumps(data).encode()))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "not a JSON object"),
        (b"signature=abc", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"event-data": {"event": "failed"}}', "no Mailgun signature object"),
        (b'{"signature": "abc", "event-data": {}}', "no Mailgun signature object"),
        (b'{"signature": {}, "event-data": {}}', "missing signature timestamp"),
        (b'{"signature": {"timestamp": "1700000000"}}', "missing signature token"),
    ],
)
def test_a_body_with_nothing_to_verify_is_unauthorized(body: bytes, expected: str) -> None:
    assert expected in refused(provider(), request(body))


def test_an_authentic_body_the_strict_reader_refuses_is_kept_not_unauthorized() -> None:
    # A lone surrogate escape in a field: Mailgun sent it (the signature verifies),
    # so it is answered 406 and kept, never 401 (which Mailgun would retry for hours).
    body = body_of(event(**{"user-variables": {"name": "\ud800"}}))
    assert b"\\ud800" in body
    mailgun = provider()
    incoming = request(body)
    mailgun.authenticate(incoming)
    with pytest.raises(PayloadError, match="surrogate"):
        mailgun.parse(incoming)
    other = body_of(event(**{"user-variables": {"name": "\ud800"}}), token="c" * 50)
    invalid_utf8 = other.replace(b"\\ud800", b"\xff")
    incoming = request(invalid_utf8, "application/json; charset=utf-8")
    mailgun.authenticate(incoming)
    with pytest.raises(PayloadError, match="UTF-8"):
        mailgun.parse(incoming)


def test_basic_credentials_are_checked_when_configured() -> None:
    mailgun = provider(credentials=["mailgun:a-long-enough-password"], realm="hooks")
    body = body_of(event())
    with pytest.raises(Unauthorized) as info:
        mailgun.authenticate(request(body))
    assert info.value.challenge is not None and 'realm="hooks"' in info.value.challenge
    headers = {
        "Content-Type": "application/json",
        "Authorization": basic_auth_header("mailgun", "a-long-enough-password"),
    }
    mailgun.authenticate(post("/hooks/mailgun", body, headers))


def test_check_headers_needs_no_body_and_checks_only_basic_credentials() -> None:
    empty = post("/hooks/mailgun", b"", {})
    provider().check_headers(empty)  # no credentials configured: the signature decides
    with pytest.raises(Unauthorized) as info:
        provider(credentials=["mailgun:a-long-enough-password"]).check_headers(empty)
    assert info.value.challenge is not None


# -- legacy (pre-2018) webhooks: form posts ------------------------------------------


def legacy_fields(key: str = KEY, token: str = TOKEN) -> dict[str, str]:
    timestamp = str(int(NOW))
    return {
        "event": "bounced",
        "recipient": "ann@example.com",
        "code": "550",
        "error": "5.1.1 mailbox unknown",
        "timestamp": timestamp,
        "token": token,
        "signature": recipe(key, timestamp, token),
        "user-id": "17",
    }


def multipart(fields: dict[str, str], boundary: str = "b0undary") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


URLENCODED = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("shape", ["urlencoded", "multipart"])
def test_an_authentic_legacy_post_is_refused_for_good_with_advice(shape: str) -> None:
    if shape == "urlencoded":
        incoming = request(urlencode(legacy_fields()).encode(), URLENCODED)
    else:
        incoming = request(multipart(legacy_fields()), 'multipart/form-data; boundary="b0undary"')
    mailgun = provider()
    mailgun.authenticate(incoming)
    with pytest.raises(PayloadError) as info:
        mailgun.parse(incoming)
    assert "legacy Mailgun webhook" in info.value.reason
    assert "JSON" in info.value.reason
    # Parsed again later (replay) without authenticate: still refused, for the same reason.
    with pytest.raises(PayloadError, match="legacy Mailgun webhook"):
        provider().parse(request(incoming.body, URLENCODED))


@pytest.mark.parametrize("shape", ["urlencoded", "multipart"])
def test_a_forged_legacy_post_is_unauthorized(shape: str) -> None:
    fields = legacy_fields(key="not-the-key")
    if shape == "urlencoded":
        incoming = request(urlencode(fields).encode(), URLENCODED + "; charset=utf-8")
    else:
        incoming = request(multipart(fields, "xyz"), "Multipart/Form-Data; boundary=xyz")
    reason = refused(provider(), incoming)
    assert "does not match" in reason and "legacy form post" in reason


def test_a_legacy_post_replayed_is_unauthorized() -> None:
    mailgun = provider()
    body = urlencode(legacy_fields()).encode()
    mailgun.authenticate(request(body, URLENCODED))
    assert "already used" in refused(mailgun, request(body, URLENCODED))


def test_a_multipart_post_without_a_boundary_has_nothing_to_verify() -> None:
    body = multipart(legacy_fields())
    assert "missing signature timestamp" in refused(
        provider(), request(body, "multipart/form-data")
    )


def test_the_provider_is_registered_and_declares_its_settings() -> None:
    assert PROVIDERS["mailgun"] == "bounce_middleware.providers.mailgun:Mailgun"
    parameters = inspect.signature(Mailgun).parameters
    assert set(Mailgun.options) <= set(parameters)
    assert Mailgun.options["signing_key"] == "list"
    assert (Mailgun.name, Mailgun.refuse_status, Mailgun.retry_status) == ("mailgun", 406, None)
    assert Mailgun.methods == frozenset({"POST"})
