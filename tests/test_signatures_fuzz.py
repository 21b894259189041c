"""Property tests: whatever a request carries, a signature check raises SignatureError or passes.

A provider maps :class:`SignatureError` to 401; any other exception escaping a
check would become a 500, and the provider would retry a forgery forever. So
Hypothesis feeds every check arbitrary header text, JSON-like values and
bodies, and near-misses of valid requests, and only ``SignatureError`` may
come out (plus ``FetchError`` for SNS, whose fetcher is told to fail here).

The example count is ``BOUNCE_HYPOTHESIS_EXAMPLES`` (default 40), as in
``tests/test_properties.py``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounce_middleware.signatures import (
    CertificateCache,
    FetchError,
    SignatureError,
    load_sendgrid_keys,
    sign_mailgun,
    sign_sns,
    sign_svix,
    verify_mailgun,
    verify_mandrill,
    verify_sendgrid,
    verify_sns,
    verify_svix,
)

from .signatures.selfmade import certificate_pem, ec_key, rsa_key, sendgrid_ui_key

PROFILE = settings(
    max_examples=int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,  # example times vary with the machine
    suppress_health_check=[HealthCheck.too_slow],
)
NOW = 1_700_000_000.0
KEY = b"fuzzing-key"

# Any code point, lone surrogates included: json.loads turns "\ud800" into one.
ANY_CHARACTER = st.characters(exclude_categories=()) | st.characters(
    min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()
)


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(ANY_CHARACTER, max_size=max_size)


headers = st.none() | texts(300) | st.sampled_from(["1700000000", "v1,", " "])
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts(80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts(8), inner),
    max_leaves=8,
)


def refused_or_accepted(call: Any) -> None:
    try:
        call()
    except SignatureError as error:
        assert error.reason and "\n" not in error.reason


@PROFILE
@given(body=st.binary(max_size=200), msg_id=headers, timestamp=headers, signature=headers)
def test_svix_never_raises_anything_else(
    body: bytes, msg_id: str | None, timestamp: str | None, signature: str | None
) -> None:
    refused_or_accepted(
        lambda: verify_svix(
            [KEY], body, msg_id=msg_id, timestamp=timestamp, signature=signature, now=NOW
        )
    )


@PROFILE
@given(body=st.binary(max_size=200), tail=texts(40))
def test_svix_near_misses_are_refused(body: bytes, tail: str) -> None:
    good = sign_svix(KEY, body, msg_id="msg_1", timestamp="1700000000")
    refused_or_accepted(
        lambda: verify_svix(
            [KEY], body + b"x", msg_id="msg_1", timestamp="1700000000", signature=good + tail
        )
    )


@PROFILE
@given(timestamp=json_values, token=json_values, signature=json_values, parent=json_values)
def test_mailgun_never_raises_anything_else(
    timestamp: object, token: object, signature: object, parent: object
) -> None:
    refused_or_accepted(
        lambda: verify_mailgun(
            [KEY],
            timestamp=timestamp,
            token=token,
            signature=signature,
            parent_signature=parent,
            now=NOW,
        )
    )


@PROFILE
@given(token=st.text(st.characters(codec="ascii"), min_size=1, max_size=60))
def test_mailgun_signs_any_ascii_token_it_accepts(token: str) -> None:
    signature = sign_mailgun(KEY, timestamp="1700000000", token=token)
    verify_mailgun([KEY], timestamp="1700000000", token=token, signature=signature, now=NOW)


@PROFILE
@given(
    form=st.lists(st.tuples(texts(20), texts(60)), max_size=4),
    url=texts(60),
    signature=headers,
)
def test_mandrill_never_raises_anything_else(
    form: list[tuple[str, str]], url: str, signature: str | None
) -> None:
    refused_or_accepted(lambda: verify_mandrill([KEY], url=url, form=form, signature=signature))


SENDGRID_KEYS = load_sendgrid_keys(sendgrid_ui_key(ec_key()))


@PROFILE
@given(body=st.binary(max_size=200), timestamp=headers, signature=headers)
def test_sendgrid_never_raises_anything_else(
    body: bytes, timestamp: str | None, signature: str | None
) -> None:
    refused_or_accepted(
        lambda: verify_sendgrid(
            SENDGRID_KEYS, body, signature=signature, timestamp=timestamp, now=NOW
        )
    )


def failing_fetch(url: str) -> bytes:
    raise FetchError("fetching failed: test")


SNS_FIELDS = st.sampled_from(
    ["Type", "Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Token", "SubscribeURL"]
    + ["SignatureVersion", "Signature", "SigningCertURL"]
)


@PROFILE
@given(message=st.dictionaries(SNS_FIELDS | texts(10), json_values, max_size=12))
def test_sns_never_raises_anything_else(message: dict[str, Any]) -> None:
    with contextlib.suppress(SignatureError, FetchError):
        verify_sns(message, CertificateCache(failing_fetch), max_age=3600, now=NOW)


SNS_KEY = rsa_key()
SNS_PEM = certificate_pem(SNS_KEY)
SNS_MESSAGE = {
    "Type": "Notification",
    "MessageId": "9b6f3c1e-0000-4000-8000-000000000001",
    "TopicArn": "arn:aws:sns:us-east-1:123456789012:bounces",
    "Message": '{"notificationType":"Bounce"}',
    "Timestamp": "2023-11-14T22:13:20.000Z",
    "SignatureVersion": "2",
    "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f.pem",
}
SNS_MESSAGE["Signature"] = sign_sns(SNS_KEY, SNS_MESSAGE)


@PROFILE
@given(field=SNS_FIELDS, value=json_values)
def test_sns_near_misses_raise_only_signature_errors(field: str, value: object) -> None:
    cache = CertificateCache(lambda url: SNS_PEM)
    verify_sns(SNS_MESSAGE, cache, max_age=3600, now=NOW)  # the unchanged message verifies
    refused_or_accepted(
        lambda: verify_sns(SNS_MESSAGE | {field: value}, cache, max_age=3600, now=NOW)
    )
