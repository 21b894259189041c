"""Requests as each provider sends them, for the provider rows: correctly signed, or forged.

Postmark, SendGrid, Mailgun and Amazon SES: built on the project's samples
(``bounce_middleware.samples.*``) with each signing key loaded once (the
samples' one-call signers load the key on every call, which for the SNS RSA
key costs ~0.1 s). Mailjet, SparkPost, Brevo, Resend and Mandrill: bodies of
this module's own (:mod:`benchmarks.provider_bodies`), written from the
providers' documented fields, so that both receivers get the same bytes
whatever the project's samples become.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

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
from bounce_middleware.signatures.mandrill import sign_mandrill
from bounce_middleware.signatures.sns import sign_sns
from bounce_middleware.signatures.svix import load_svix_secrets, sign_svix

from . import provider_bodies as bodies
from .django_project.data import MAILGUN_SIGNING_KEY, WEBHOOK_PASSWORD, WEBHOOK_USER
from .harness import bounce_body
from .provider_keys import MANDRILL_KEY, MANDRILL_URL, RESEND_SECRET

Request = tuple[dict[str, str], bytes]

#: A Svix secret neither receiver knows (the forged Resend rows).
OTHER_RESEND_SECRET = "whsec_bm90IHRoZSBiZW5jaG1hcmsncyBrZXksIGFub3RoZXI="


def _json(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


def _basic_json(payload: Any, password: str, **headers: str) -> Request:
    return {
        "Content-Type": "application/json",
        "Authorization": basic_auth_header(WEBHOOK_USER, password),
        **headers,
    }, _json(payload)


def mandrill_request(
    events: list[dict[str, Any]], *, key: str = MANDRILL_KEY, url: str = MANDRILL_URL
) -> Request:
    """``mandrill_events=<JSON array>``, form-encoded and signed as Mandrill signs it."""
    # Mandrill writes its JSON compact (the published captures).
    form = {"mandrill_events": json.dumps(events, separators=(",", ":"))}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Mandrill-Webhook/1.0",
        "X-Mandrill-Signature": sign_mandrill(key.encode("utf-8"), url=url, form=form),
    }
    return headers, urlencode(form).encode("ascii")


class Signers:
    """Requests as each provider sends them, signing keys loaded once."""

    def __init__(self) -> None:
        sendgrid_key = load_pem_private_key(TEST_PRIVATE_KEY_PEM.encode("ascii"), None)
        sns_key = load_pem_private_key(TEST_SNS_PRIVATE_KEY_PEM, None)
        assert isinstance(sendgrid_key, ec.EllipticCurvePrivateKey)
        assert isinstance(sns_key, rsa.RSAPrivateKey)
        self.sendgrid_key = sendgrid_key
        self.sns_key = sns_key
        self.svix_keys: Mapping[str, tuple[bytes, ...]] = {
            secret: load_svix_secrets(secret) for secret in (RESEND_SECRET, OTHER_RESEND_SECRET)
        }

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

    def mailjet(self, email: str, password: str = WEBHOOK_PASSWORD) -> Request:
        """One ``bounce`` event (``hard_bounce: true``), not grouped, with Basic credentials."""
        return _basic_json(bodies.mailjet_bounce(email), password)

    def sparkpost(self, email: str, password: str = WEBHOOK_PASSWORD) -> Request:
        """A one-event batch ``[{"msys": {"message_event": bounce class 10}}]``, Basic auth."""
        return _basic_json(
            [bodies.sparkpost_bounce(email)],
            password,
            **{"User-Agent": "SparkPost", "X-MessageSystems-Batch-ID": str(uuid.uuid4())},
        )

    def brevo(self, email: str, password: str = WEBHOOK_PASSWORD) -> Request:
        """One ``hard_bounce`` event (not batched) with Basic credentials."""
        return _basic_json(bodies.brevo_bounce(email), password)

    def resend(self, email: str, secret: str = RESEND_SECRET, *, age: float = 0.0) -> Request:
        """An ``email.bounced`` (Permanent, General), signed by Svix ``age`` seconds ago."""
        body = _json(bodies.resend_bounce(email))
        msg_id = f"msg_{uuid.uuid4().hex[:27]}"
        timestamp = str(int(time.time() - age))
        (key,) = self.svix_keys[secret] if secret in self.svix_keys else load_svix_secrets(secret)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Svix-Webhooks/1.24.0",
            "svix-id": msg_id,
            "svix-timestamp": timestamp,
            "svix-signature": sign_svix(key, body, msg_id=msg_id, timestamp=timestamp),
        }
        return headers, body

    def mandrill(self, email: str, key: str = MANDRILL_KEY, url: str = MANDRILL_URL) -> Request:
        """A one-event ``mandrill_events`` batch (a ``hard_bounce``), signed over ``url``."""
        return mandrill_request([bodies.mandrill_bounce(email)], key=key, url=url)

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
