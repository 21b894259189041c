"""SendGrid's ECDSA P-256 signature: the SDKs' published vector, and keys made here."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bounce_middleware import ConfigurationError
from bounce_middleware.signatures import (
    SignatureError,
    load_sendgrid_keys,
    sendgrid,
    sign_sendgrid,
    verify_sendgrid,
)

from .signatures.selfmade import ec_key, pem_public_key, rsa_key, sendgrid_ui_key

# sendgrid/sendgrid-python test/unit/test_eventwebhook.py (the same vector is in
# sendgrid-php): the key as SendGrid's UI shows it, and the body it signed, built
# the way the SDK's test builds it, trailing CRLF included.
PUBLISHED_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
    "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
PUBLISHED_OTHER_KEY = (  # the SDK's "bad key" test
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWH"
    "w8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
)
PUBLISHED_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15T"
    "luLtEZtM="
)
PUBLISHED_TIMESTAMP = "1600112502"
PUBLISHED_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": (
                    "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
                ),
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()

TS = "1700000000"
NOW = 1_700_000_000.0
BODY = b'[{"email":"a@example.com","event":"bounce","type":"bounce"}]\r\n'


def recipe(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    der = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def test_published_vector_verifies_with_the_key_as_sendgrid_shows_it() -> None:
    keys = load_sendgrid_keys(PUBLISHED_KEY)
    verify_sendgrid(
        keys,
        PUBLISHED_BODY,
        signature=PUBLISHED_SIGNATURE,
        timestamp=PUBLISHED_TIMESTAMP,
        now=float(PUBLISHED_TIMESTAMP),
    )


@pytest.mark.parametrize(
    ("key", "body", "timestamp"),
    [
        (PUBLISHED_OTHER_KEY, PUBLISHED_BODY, PUBLISHED_TIMESTAMP),  # another account's key
        (PUBLISHED_KEY, PUBLISHED_BODY.rstrip(b"\r\n"), PUBLISHED_TIMESTAMP),  # CRLF lost
        (PUBLISHED_KEY, json.dumps(json.loads(PUBLISHED_BODY)).encode(), PUBLISHED_TIMESTAMP),
        (PUBLISHED_KEY, PUBLISHED_BODY, "1600112503"),  # the timestamp is signed too
    ],
    ids=["other-key", "no-trailing-crlf", "re-serialised", "other-timestamp"],
)
def test_published_vector_refused_when_anything_differs(
    key: str, body: bytes, timestamp: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_sendgrid(
            load_sendgrid_keys(key),
            body,
            signature=PUBLISHED_SIGNATURE,
            timestamp=timestamp,
            now=float(PUBLISHED_TIMESTAMP),
        )
    assert caught.value.reason == (
        "SendGrid signature does not verify with any configured public key"
    )


def test_own_key_in_the_ui_form_and_in_pem_both_verify() -> None:
    private = ec_key()
    signature = recipe(private, TS, BODY)
    for text in (
        sendgrid_ui_key(private),
        pem_public_key(private).decode(),
        pem_public_key(private),
    ):
        verify_sendgrid(load_sendgrid_keys(text), BODY, signature=signature, timestamp=TS, now=NOW)


def test_the_key_may_be_pasted_with_line_breaks() -> None:
    private = ec_key()
    wrapped = "\n".join(sendgrid_ui_key(private)[i : i + 40] for i in range(0, 124, 40))
    verify_sendgrid(
        load_sendgrid_keys(wrapped),
        BODY,
        signature=recipe(private, TS, BODY),
        timestamp=TS,
        now=NOW,
    )


def test_rotation_accepts_a_signature_by_any_configured_key() -> None:
    keys = load_sendgrid_keys([sendgrid_ui_key(ec_key(1)), sendgrid_ui_key(ec_key(2))])
    verify_sendgrid(keys, BODY, signature=recipe(ec_key(2), TS, BODY), timestamp=TS, now=NOW)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_sendgrid(keys, BODY, signature=recipe(ec_key(3), TS, BODY), timestamp=TS, now=NOW)


def test_the_library_signer_agrees_with_the_recipe() -> None:
    private = ec_key()
    signature = sign_sendgrid(private, BODY, timestamp=TS)
    verify_sendgrid(
        load_sendgrid_keys(sendgrid_ui_key(private)),
        BODY,
        signature=signature,
        timestamp=TS,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"body": BODY + b" "},
            "SendGrid signature does not verify with any configured public key",
        ),
        ({"signature": None}, "missing X-Twilio-Email-Event-Webhook-Signature header"),
        ({"timestamp": None}, "missing X-Twilio-Email-Event-Webhook-Timestamp header"),
        ({"signature": "%%%"}, "X-Twilio-Email-Event-Webhook-Signature header is not base64"),
        ({"signature": "QUJD"}, "SendGrid signature does not verify"),  # base64, not DER
        ({"signature": "A" * 200}, "X-Twilio-Email-Event-Webhook-Signature header is longer"),
        ({"timestamp": "1700000000.0"}, "X-Twilio-Email-Event-Webhook-Timestamp is not a Unix"),
        ({"now": NOW + sendgrid.MAX_AGE + 1}, "X-Twilio-Email-Event-Webhook-Timestamp is stale"),
        ({"now": NOW - 301}, "X-Twilio-Email-Event-Webhook-Timestamp is 301 s in the future"),
    ],
)
def test_wrong_malformed_and_stale_requests_are_refused(
    change: dict[str, object], reason: str
) -> None:
    private = ec_key()
    arguments: dict[str, object] = {
        "keys": load_sendgrid_keys(sendgrid_ui_key(private)),
        "body": BODY,
        "signature": recipe(private, TS, BODY),
        "timestamp": TS,
        "now": NOW,
    } | change
    with pytest.raises(SignatureError) as caught:
        verify_sendgrid(**arguments)  # type: ignore[arg-type]
    assert caught.value.reason.startswith(reason)


def test_window_keeps_a_retry_a_day_later() -> None:
    private = ec_key()
    keys = load_sendgrid_keys(sendgrid_ui_key(private))
    signature = recipe(private, TS, BODY)
    verify_sendgrid(keys, BODY, signature=signature, timestamp=TS, now=NOW + 24 * 3600)
    assert sendgrid.MAX_AGE == 24 * 3600 + 300


def p384_ui_key() -> str:
    der = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "no SendGrid public key configured"),
        ([None], "SendGrid public key 1 is NoneType, not a string"),
        (
            "not a key",
            "SendGrid public key 1 is not the base64 key SendGrid shows (or that key in PEM)",
        ),
        (
            "QUJDRA==",
            "SendGrid public key 1 is not the base64 key SendGrid shows (or that key in PEM)",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nQUJD\n-----END PUBLIC KEY-----",
            "SendGrid public key 1 is not",
        ),
        (pem_public_key(rsa_key()).decode(), "SendGrid public key 1 is not a P-256 (ECDSA) key"),
        ([PUBLISHED_KEY, "p384"], "SendGrid public key 2 is not a P-256 (ECDSA) key"),
    ],
)
def test_keys_fail_closed_when_the_provider_is_built(keys: object, message: str) -> None:
    if isinstance(keys, list) and "p384" in keys:
        keys = [PUBLISHED_KEY, p384_ui_key()]
    with pytest.raises(ConfigurationError) as caught:
        load_sendgrid_keys(keys)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
