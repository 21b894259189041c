"""Amazon SES notifications in signed SNS messages, for the ``send`` command and for tests.

SES payload factories (``ses_bounce``, ``ses_complaint``... or ``ses_notification``
by kind), SNS envelopes around them, and a signer that signs them with the
public TEST key (:mod:`.sns_test_keys`). A route accepts them only when its
``fetch`` serves the TEST certificate: pass :func:`test_fetcher` (or an
:class:`SNSTestFetcher`, which records what it was asked for)::

    route = AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=test_fetcher)
    headers, body = sign_request(ses_bounce(email="ann@example.com"))

Needs the ``crypto`` extra to sign (``cryptography``), imported when first used.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from bounce_middleware.providers.amazon_ses import VALIDATION_MESSAGE
from bounce_middleware.signatures.fetch import FetchError
from bounce_middleware.signatures.sns import check_subscribe_url, sign_sns

from .amazon_ses_payloads import (
    SES_KINDS,
    now,
    ses_bounce,
    ses_complaint,
    ses_delivery_delay,
    ses_event,
    ses_notification,
)
from .sns_test_keys import TEST_SNS_CERT_URL, TEST_SNS_CERTIFICATE_PEM, TEST_SNS_PRIVATE_KEY_PEM

__all__ = [
    "SES_KINDS",
    "TEST_SNS_CERTIFICATE_PEM",
    "TEST_SNS_CERT_URL",
    "TEST_SNS_PRIVATE_KEY_PEM",
    "TEST_SNS_TOPIC_ARN",
    "VALIDATION_MESSAGE",
    "SNSTestFetcher",
    "sample_request",
    "ses_bounce",
    "ses_complaint",
    "ses_delivery_delay",
    "ses_event",
    "ses_notification",
    "sign_envelope",
    "sign_request",
    "sns_notification",
    "sns_subscription_confirmation",
    "test_fetcher",
]

#: The topic the samples come from: configure it in the test route's ``topic_arns``.
TEST_SNS_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:bounce-middleware-test"


def sns_notification(
    message: Mapping[str, Any] | str,
    *,
    topic_arn: str = TEST_SNS_TOPIC_ARN,
    version: int | str = 1,
    message_id: str | None = None,
    timestamp: str | None = None,
    subject: str | None = "Amazon SES Email Event Notification",
) -> dict[str, Any]:
    """An unsigned SNS ``Notification`` envelope; ``message`` is JSON-encoded unless a string."""
    text = message if isinstance(message, str) else json.dumps(message) + "\n"
    envelope = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Subject": subject,
        "Message": text,
        "Timestamp": timestamp or now(),
        "SignatureVersion": str(version),
        "SigningCertURL": TEST_SNS_CERT_URL,
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:1",
    }
    if subject is None:
        del envelope["Subject"]
    return envelope


def sns_subscription_confirmation(
    *,
    topic_arn: str = TEST_SNS_TOPIC_ARN,
    type: str = "SubscriptionConfirmation",
    version: int | str = 1,
    message_id: str | None = None,
) -> dict[str, Any]:
    """An unsigned SNS ``SubscriptionConfirmation`` (or ``UnsubscribeConfirmation``) envelope."""
    token = uuid.uuid4().hex * 4
    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else "us-east-1"
    return {
        "Type": type,
        "MessageId": message_id or str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic_arn,
        "Message": f"You have chosen to subscribe to the topic {topic_arn}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": f"https://sns.{region}.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={topic_arn}&Token={token}",
        "Timestamp": now(),
        "SignatureVersion": str(version),
        "SigningCertURL": TEST_SNS_CERT_URL,
    }


def sign_envelope(
    envelope: Mapping[str, Any],
    *,
    credentials: str | None = None,
    private_key_pem: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of the request SNS would post: ``envelope`` signed with the TEST key.

    ``credentials``: ``"user:password"`` sent as HTTP Basic (a route with
    ``credentials``); ``private_key_pem``: sign with another key (tests of a wrong one).
    """
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_key_pem or TEST_SNS_PRIVATE_KEY_PEM, password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("SNS signs with an RSA key")
    signed = {**envelope, "Signature": sign_sns(key, envelope)}
    topic = str(envelope.get("TopicArn", ""))
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "User-Agent": "Amazon Simple Notification Service Agent",
        "x-amz-sns-message-type": str(envelope.get("Type", "")),
        "x-amz-sns-message-id": str(envelope.get("MessageId", "")),
        "x-amz-sns-topic-arn": topic,
        "x-amz-sns-subscription-arn": f"{topic}:6f1b0d4e-2c3a-4b5d-8e9f-0a1b2c3d4e5f",
    }
    if credentials is not None:
        from . import basic_auth_header

        user, _, password = credentials.partition(":")
        headers["Authorization"] = basic_auth_header(user, password)
    return headers, json.dumps(signed, indent=2).encode("utf-8")


def sign_request(
    message: Mapping[str, Any] | str,
    *,
    topic_arn: str = TEST_SNS_TOPIC_ARN,
    version: int | str = 1,
    message_id: str | None = None,
    credentials: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of a signed SNS notification carrying ``message`` (SES's JSON)."""
    envelope = sns_notification(
        message, topic_arn=topic_arn, version=version, message_id=message_id
    )
    return sign_envelope(envelope, credentials=credentials)


def sample_request(
    kind: str = "hard", *, email: str, secret: str | None = None
) -> tuple[dict[str, str], bytes]:
    """A signed sample from :data:`TEST_SNS_TOPIC_ARN` for ``bounce-middleware send``.

    ``kind``: a key of :data:`SES_KINDS`, ``"confirmation"`` (a subscription
    confirmation) or ``"validation"`` (SES's "Successfully validated" notice).
    ``secret``: the route's Basic ``user:password``, if it has credentials. The
    route must list the TEST topic and fetch with :func:`test_fetcher`.
    """
    if kind == "confirmation":
        return sign_envelope(sns_subscription_confirmation(), credentials=secret)
    message = VALIDATION_MESSAGE if kind == "validation" else ses_notification(kind, email=email)
    return sign_request(message, credentials=secret)


_CONFIRMED = (
    b'<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
    b"<ConfirmSubscriptionResult><SubscriptionArn>%s:6f1b0d4e-2c3a-4b5d-8e9f-0a1b2c3d4e5f"
    b"</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
)


def test_fetcher(url: str) -> bytes:
    """A ``fetch`` for test routes: the TEST certificate, and SNS's answer to a confirmation.

    Serves :data:`TEST_SNS_CERTIFICATE_PEM` at :data:`TEST_SNS_CERT_URL` and
    answers any ``ConfirmSubscription`` URL as SNS does; anything else fails
    with :class:`FetchError`. Never touches the network. Never use in production:
    it makes requests signed with the public TEST key authentic.
    """
    if url == TEST_SNS_CERT_URL:
        return TEST_SNS_CERTIFICATE_PEM
    try:
        check_subscribe_url(url)
    except ValueError:
        raise FetchError("the test fetcher serves no such URL") from None
    topic = url.partition("TopicArn=")[2].partition("&")[0]
    return _CONFIRMED % topic.encode("ascii")


test_fetcher.__test__ = False  # type: ignore[attr-defined]  # pytest: a helper, not a test


class SNSTestFetcher:
    """:func:`test_fetcher` that records every URL (``calls``), and can be told to fail.

    ``fail=True``: every fetch raises :class:`FetchError` (a network failure).
    ``certificates``: more URL -> PEM to serve (another certificate, another URL).
    """

    def __init__(
        self, *, fail: bool = False, certificates: Mapping[str, bytes] | None = None
    ) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.certificates = dict(certificates or {})

    @property
    def confirmed(self) -> list[str]:
        """The ``SubscribeURL`` s visited, in order."""
        return [url for url in self.calls if "Action=ConfirmSubscription" in url]

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if self.fail:
            raise FetchError("the test fetcher was told to fail")
        pem = self.certificates.get(url)
        return pem if pem is not None else test_fetcher(url)
