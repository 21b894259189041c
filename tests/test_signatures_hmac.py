"""The HMAC schemes: Mailgun, Svix (Resend) and Mandrill, against published vectors and own keys.

Each test signs with the recipe written out here from providers.md (hmac and
hashlib directly), not with the library's own ``sign_*``, so that a mistake
shared by the signer and the checker cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qsl, urlencode

import pytest

from bounce_middleware import ConfigurationError
from bounce_middleware.signatures import (
    SeenTokens,
    SignatureError,
    load_secrets,
    load_svix_secrets,
    mailgun,
    mandrill,
    sign_mailgun,
    sign_mandrill,
    sign_svix,
    svix,
    verify_mailgun,
    verify_mandrill,
    verify_svix,
)

# ============================================================================ Mailgun

MAILGUN_KEY = b"mg-signing-key-for-tests-0123456789"
TOKEN = "f" * 50
TS = "1700000000"
NOW = 1_700_000_000.0


def mailgun_recipe(key: bytes, timestamp: str, token: str) -> str:
    return hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()


def test_mailgun_published_vector_verifies() -> None:
    # symfony/mailgun-mailer MailgunRequestParserTest (providers.md, "Mailgun").
    keys = load_secrets("key-0p6mqbf74lb20gzq9f4dhpn9rg3zyk26", what="Mailgun signing key")
    verify_mailgun(
        keys,
        timestamp="1661590666",
        token="fff0ebc59c0516f4ce0823212a2f45e5c67814420b99fe558b",
        signature="a0cd251821d8fd56a2130b541becc8e441023574e602fe9829a9ab9fbfdea33f",
        now=1661590666.0,
    )


def test_mailgun_own_key_verifies_and_the_signer_agrees_with_the_recipe() -> None:
    signature = mailgun_recipe(MAILGUN_KEY, TS, TOKEN)
    assert sign_mailgun(MAILGUN_KEY, timestamp=TS, token=TOKEN) == signature
    verify_mailgun([MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature, now=NOW)
    # The docs type the timestamp int: a JSON number signs the same digits.
    verify_mailgun([MAILGUN_KEY], timestamp=int(TS), token=TOKEN, signature=signature, now=NOW)
    # Hex is compared as bytes: upper-case digits are the same signature.
    verify_mailgun([MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature.upper(), now=NOW)


def test_mailgun_rotation_accepts_any_configured_key() -> None:
    signature = mailgun_recipe(b"new-key", TS, TOKEN)
    verify_mailgun(
        [b"old-key", b"new-key"], timestamp=TS, token=TOKEN, signature=signature, now=NOW
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"keys": [b"another-key"]}, "Mailgun signature does not match any configured signing key"),
        ({"token": "e" * 50}, "Mailgun signature does not match any configured signing key"),
        (
            {"timestamp": "1700000001"},
            "Mailgun signature does not match any configured signing key",
        ),
        ({"signature": "0" * 64}, "Mailgun signature does not match any configured signing key"),
        ({"signature": "abc"}, "signature is not 64 hexadecimal digits"),
        ({"signature": "g" * 64}, "signature is not 64 hexadecimal digits"),
        ({"signature": None}, "missing signature"),
        ({"signature": 12}, "missing signature"),
        ({"token": None}, "missing signature token"),
        ({"token": ""}, "missing signature token"),
        ({"token": "t" * 257}, "signature token is longer than 256 characters"),
        ({"token": "\ud800"}, "signature token is not ASCII"),
        ({"timestamp": None}, "missing signature timestamp"),
        ({"timestamp": True}, "missing signature timestamp"),
        ({"timestamp": "17e8"}, "timestamp is not a Unix time in seconds"),
    ],
)
def test_mailgun_refuses_a_wrong_or_malformed_signature_block(
    change: dict[str, object], reason: str
) -> None:
    arguments: dict[str, object] = {
        "keys": [MAILGUN_KEY],
        "timestamp": TS,
        "token": TOKEN,
        "signature": mailgun_recipe(MAILGUN_KEY, TS, TOKEN),
        "now": NOW,
    } | change
    with pytest.raises(SignatureError) as caught:
        verify_mailgun(**arguments)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_mailgun_window_keeps_retries_hours_later_and_refuses_older() -> None:
    signature = mailgun_recipe(MAILGUN_KEY, TS, TOKEN)
    # Mailgun's last retry, about 8 h after a first attempt that kept its signature.
    verify_mailgun(
        [MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature, now=NOW + 8 * 3600
    )
    assert mailgun.MAX_AGE == 9 * 3600
    with pytest.raises(SignatureError, match="stale"):
        verify_mailgun(
            [MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature, now=NOW + 9 * 3600 + 1
        )
    with pytest.raises(SignatureError, match="in the future"):
        verify_mailgun([MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature, now=NOW - 301)


def test_mailgun_subaccount_parent_signature_verifies_with_the_parent_key() -> None:
    verify_mailgun(
        [b"parent-key"],
        timestamp=TS,
        token=TOKEN,
        signature=mailgun_recipe(b"subaccount-key", TS, TOKEN),
        parent_signature=mailgun_recipe(b"parent-key", TS, TOKEN),
        now=NOW,
    )
    with pytest.raises(SignatureError, match="does not match"):
        verify_mailgun(
            [b"unrelated-key"],
            timestamp=TS,
            token=TOKEN,
            signature=mailgun_recipe(b"subaccount-key", TS, TOKEN),
            parent_signature=mailgun_recipe(b"parent-key", TS, TOKEN),
            now=NOW,
        )


def test_mailgun_replayed_token_is_refused_and_only_verified_tokens_are_remembered() -> None:
    seen = SeenTokens(window=mailgun.MAX_AGE)
    signature = mailgun_recipe(MAILGUN_KEY, TS, TOKEN)
    with pytest.raises(SignatureError, match="does not match"):
        verify_mailgun(
            [MAILGUN_KEY], timestamp=TS, token=TOKEN, signature="0" * 64, seen=seen, now=NOW
        )
    assert len(seen) == 0  # a forgery never takes a place in the memory
    verify_mailgun(
        [MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature, seen=seen, now=NOW
    )
    with pytest.raises(SignatureError, match="replayed"):
        verify_mailgun(
            [MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature, seen=seen, now=NOW + 5
        )
    seen.forget(TOKEN)  # the delivery failed: Mailgun's retry must be accepted
    verify_mailgun(
        [MAILGUN_KEY], timestamp=TS, token=TOKEN, signature=signature, seen=seen, now=NOW + 300
    )


# ============================================================================ Svix (Resend)

SVIX_SECRET = "whsec_" + base64.b64encode(b"svix-test-key-of-24-bytes").decode()
SVIX_KEY = b"svix-test-key-of-24-bytes"
MSG_ID = "msg_2AbCdEfGhIjKlMnOpQrStUv"
BODY = b'{"type":"email.bounced","data":{"to":["a@example.com"]}}\r\n'


def svix_recipe(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_svix_published_vector_verifies_with_and_without_the_prefix() -> None:
    # svix/svix-webhooks python/tests/test_webhooks.py, test_sign_function.
    for secret in ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"):
        verify_svix(
            load_svix_secrets(secret),
            b'{"test": 2432232314}',
            msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp="1614265330",
            signature="v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            now=1614265330.0,
        )


def test_svix_own_secret_verifies_and_the_signer_agrees_with_the_recipe() -> None:
    assert load_svix_secrets(SVIX_SECRET) == (SVIX_KEY,)
    signature = svix_recipe(SVIX_KEY, MSG_ID, TS, BODY)
    assert sign_svix(SVIX_KEY, BODY, msg_id=MSG_ID, timestamp=TS) == signature
    verify_svix([SVIX_KEY], BODY, msg_id=MSG_ID, timestamp=TS, signature=signature, now=NOW)


def test_svix_several_signatures_in_the_header_any_one_matching() -> None:
    good = svix_recipe(SVIX_KEY, MSG_ID, TS, BODY)
    header = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",  # another secret's
            "v1a,c29tZSBlZDI1NTE5IHNpZ25hdHVyZQ==",  # asymmetric: skipped
            "v1,not*base64",  # garbled: skipped, does not hide the next
            good,
        ]
    )
    verify_svix([SVIX_KEY], BODY, msg_id=MSG_ID, timestamp=TS, signature=header, now=NOW)


def test_svix_rotation_accepts_any_configured_secret() -> None:
    other = "whsec_" + base64.b64encode(b"the-previous-secret-key!").decode()
    keys = load_svix_secrets([other, SVIX_SECRET])
    signature = svix_recipe(SVIX_KEY, MSG_ID, TS, BODY)
    verify_svix(keys, BODY, msg_id=MSG_ID, timestamp=TS, signature=signature, now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"keys": [b"wrong-key"]}, "Svix signature does not match any configured secret"),
        ({"body": BODY[:-2]}, "Svix signature does not match any configured secret"),
        ({"body": json.dumps(json.loads(BODY)).encode()}, "Svix signature does not match any"),
        ({"msg_id": "msg_other"}, "Svix signature does not match any configured secret"),
        ({"msg_id": None}, "missing svix-id header"),
        ({"msg_id": "msg_é"}, "svix-id header is not printable ASCII"),
        ({"msg_id": "m" * 257}, "svix-id header is longer than 256 characters"),
        ({"timestamp": None}, "missing svix-timestamp header"),
        ({"timestamp": "soon"}, "svix-timestamp is not a Unix time in seconds"),
        ({"signature": None}, "missing svix-signature header"),
        ({"signature": "v2,abc= v1a,abc="}, "svix-signature header has no v1 signature"),
        ({"now": NOW + 301}, "svix-timestamp is stale: 301 s old, the window is 300 s"),
        ({"now": NOW - 301}, "svix-timestamp is 301 s in the future, at most 300 s is allowed"),
    ],
)
def test_svix_refuses_wrong_malformed_and_stale_requests(
    change: dict[str, object], reason: str
) -> None:
    arguments: dict[str, object] = {
        "keys": [SVIX_KEY],
        "body": BODY,
        "msg_id": MSG_ID,
        "timestamp": TS,
        "signature": svix_recipe(SVIX_KEY, MSG_ID, TS, BODY),
        "now": NOW,
    } | change
    with pytest.raises(SignatureError) as caught:
        verify_svix(**arguments)  # type: ignore[arg-type]
    assert caught.value.reason.startswith(reason)


def test_svix_window_is_five_minutes_both_ways() -> None:
    signature = svix_recipe(SVIX_KEY, MSG_ID, TS, BODY)
    for now in (NOW - 300, NOW + 300):
        verify_svix([SVIX_KEY], BODY, msg_id=MSG_ID, timestamp=TS, signature=signature, now=now)
    assert svix.TOLERANCE == 300


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ([], "no Svix secret configured"),
        ("whsec_", "Svix secret 1 is empty"),
        (
            ["whsec_" + "QUFB", "whsec_not*base64"],
            'Svix secret 2 is not "whsec_" followed by base64',
        ),
    ],
)
def test_svix_secrets_fail_closed(secrets: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_svix_secrets(secrets)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_svix_secret_that_lost_its_padding_still_loads() -> None:
    padded = base64.b64encode(b"sixteen-byte-key").decode()
    assert padded.endswith("=")
    assert load_svix_secrets("whsec_" + padded.rstrip("=")) == (b"sixteen-byte-key",)


# ============================================================================ Mandrill

MANDRILL_KEY = b"mandrill-webhook-key-for-tests"
URL = "https://example.com/hooks/mandrill"
EVENTS = json.dumps([{"event": "hard_bounce", "_id": "abc", "ts": 1700000000}])


def mandrill_recipe(key: bytes, url: str, form: dict[str, str]) -> str:
    data = url + "".join(name + form[name] for name in sorted(form))
    return base64.b64encode(hmac.new(key, data.encode(), hashlib.sha1).digest()).decode()


def test_mandrill_published_empty_check_verifies_with_the_test_key() -> None:
    # symfony/mailchimp-mailer MailchimpRequestParserTest::testEmptyWebhookCheck.
    verify_mandrill(
        [mandrill.TEST_KEY],
        url="http://localhost/",
        form={"mandrill_events": "[]"},
        signature="QANhYzyeonX51wyzKImgnLZ27CE=",
    )


def test_mandrill_own_key_verifies_from_the_raw_form_body() -> None:
    body = urlencode({"mandrill_events": EVENTS})
    signature = mandrill_recipe(MANDRILL_KEY, URL, {"mandrill_events": EVENTS})
    form = parse_qsl(body, keep_blank_values=True)
    assert sign_mandrill(MANDRILL_KEY, url=URL, form=form) == signature
    verify_mandrill([MANDRILL_KEY], url=URL, form=form, signature=signature)


def test_mandrill_signs_every_field_sorted_by_name() -> None:
    form = {"zeta": "last", "mandrill_events": EVENTS, "alpha": ""}
    signature = mandrill_recipe(MANDRILL_KEY, URL, form)
    verify_mandrill([MANDRILL_KEY], url=URL, form=list(form.items()), signature=signature)


def test_mandrill_rotation_compares_every_key() -> None:
    signature = mandrill_recipe(b"new", URL, {"mandrill_events": EVENTS})
    verify_mandrill(
        [b"old", b"new"], url=URL, form={"mandrill_events": EVENTS}, signature=signature
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"keys": [b"wrong"]}, "Mandrill signature does not match any configured key"),
        # The URL must be exactly the one configured in Mandrill.
        ({"url": "http://example.com/hooks/mandrill"}, "Mandrill signature does not match"),
        ({"url": URL + "/"}, "Mandrill signature does not match any configured key"),
        ({"form": {"mandrill_events": EVENTS + " "}}, "Mandrill signature does not match"),
        (
            {"form": [("mandrill_events", EVENTS), ("mandrill_events", "[]")]},
            "a form field appears more than once",
        ),
        ({"form": {"mandrill_events": "\udcff"}}, "a form field is not valid Unicode"),
        ({"signature": None}, "missing X-Mandrill-Signature header"),
        ({"signature": "not base64!"}, "X-Mandrill-Signature header is not base64"),
        ({"signature": "A" * 300}, "X-Mandrill-Signature header is longer than 256 characters"),
    ],
)
def test_mandrill_refuses_wrong_and_malformed_requests(
    change: dict[str, object], reason: str
) -> None:
    arguments: dict[str, object] = {
        "keys": [MANDRILL_KEY],
        "url": URL,
        "form": {"mandrill_events": EVENTS},
        "signature": mandrill_recipe(MANDRILL_KEY, URL, {"mandrill_events": EVENTS}),
    } | change
    with pytest.raises(SignatureError) as caught:
        verify_mandrill(**arguments)  # type: ignore[arg-type]
    assert caught.value.reason.startswith(reason)
