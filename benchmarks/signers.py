"""Requests as each provider sends them, for the provider rows: correctly signed, or forged.

Built on the project's samples (``bounce_middleware.samples.*``) with each
signing key loaded once: the samples' one-call signers load the key on every
call, which for the SNS RSA key costs ~0.1 s.
"""

from __future__ import annotations

import json
import uuid

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bounce_middleware.samples import basic_auth_header
from bounce_middleware.samples.amazon_ses import (
    TEST_SNS_PRIVATE_KEY_PEM,
    ses_notification,
    sns_notification,
)
from bounce_middleware.samples.mailgun import mailgun_event
from bounce_middleware.samples.mailgun import sign_request as sign_mailgun_request
from bounce_middleware.samples.sendgrid import TEST_PRIVATE_KEY_PEM, sendgrid_event
from bounce_middleware.samples.sendgrid import sign_request as sign_sendgrid_request
from bounce_middleware.signatures.sns import sign_sns

from .django_project.data import MAILGUN_SIGNING_KEY, WEBHOOK_PASSWORD, WEBHOOK_USER
from .harness import bounce_body

Request = tuple[dict[str, str], bytes]


class Signers:
    """Requests as each provider sends them, signing keys loaded once."""

    def __init__(self) -> None:
        sendgrid_key = load_pem_private_key(TEST_PRIVATE_KEY_PEM.encode("ascii"), None)
        sns_key = load_pem_private_key(TEST_SNS_PRIVATE_KEY_PEM, None)
        assert isinstance(sendgrid_key, ec.EllipticCurvePrivateKey)
        assert isinstance(sns_key, rsa.RSAPrivateKey)
        self.sendgrid_key = sendgrid_key
        self.sns_key = sns_key

    def postmark(self, email: str, password: str = WEBHOOK_PASSWORD) -> Request:
        """A HardBounce (about 1.3 KB) with Basic credentials."""
        headers = {
            "Content-Type": "application/json",
            "Authorization": basic_auth_header(WEBHOOK_USER, password),
        }
        return headers, bounce_body(email)

    def sendgrid(self, email: str) -> Request:
        """A one-event batch ``[{"event": "bounce", ...}]``, ECDSA-signed with the TEST key."""
        return sign_sendgrid_request(
            [sendgrid_event("hard", email=email)], private_key=self.sendgrid_key
        )

    def sendgrid_forged(self, email: str) -> Request:
        """A signature made for another body."""
        headers, _ = self.sendgrid(email)
        return headers, self.sendgrid(email)[1]

    def mailgun(self, email: str, signing_key: str = MAILGUN_SIGNING_KEY) -> Request:
        """A ``failed``/permanent event, signed with a new token and the current time."""
        return sign_mailgun_request(mailgun_event("hard", email=email), signing_key=signing_key)

    def ses(self, email: str, password: str = WEBHOOK_PASSWORD, *, forged: bool = False) -> Request:
        """An SNS notification of an SES Bounce (signature v1), with Basic credentials.

        ``forged``: the message is changed after signing.
        """
        envelope = sns_notification(ses_notification("hard", email=email))
        signed = {**envelope, "Signature": sign_sns(self.sns_key, envelope)}
        if forged:
            signed["Message"] = signed["Message"].replace(email, "mallory@example.com")
        topic = envelope["TopicArn"]
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": envelope["MessageId"],
            "x-amz-sns-topic-arn": topic,
            "x-amz-sns-subscription-arn": f"{topic}:{uuid.UUID(int=7)}",
            "Authorization": basic_auth_header(WEBHOOK_USER, password),
        }
        # SNS posts its envelope indented, as the samples lay it out.
        return headers, json.dumps(signed, indent=2).encode("utf-8")
