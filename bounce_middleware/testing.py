"""Helpers for testing an application that uses bounce-middleware.

Realistic payloads of every provider (every record shape, with overrides),
and correctly signed requests to post them with::

    from webtest import TestApp
    from bounce_middleware.testing import auth_headers, postmark_bounce, sendgrid_event
    from bounce_middleware.testing import sign_sendgrid_request

    def test_bounce_flags_user():
        app = TestApp(make_wsgi_app())
        app.post_json("/postmark/bounce", postmark_bounce(email="ann@example.com"),
                      headers=auth_headers("postmark", "s3cret"))
        headers, body = sign_sendgrid_request([sendgrid_event("hard", email="bob@example.com")])
        app.post("/hooks/sendgrid", body, headers=headers)

SendGrid and Amazon SNS sign with private keys only they hold, so their
requests here are signed with published TEST material: configure the test
route with :data:`SENDGRID_TEST_PUBLIC_KEY`, or with :data:`TEST_SNS_TOPIC_ARN`
and ``fetch=sns_test_fetcher``; never in production. Mailgun's requests are
signed with the signing key you give, Resend's with the ``whsec_`` secret you
give, Mandrill's with the webhook key and URL you give; Mailjet, SparkPost
and Brevo sign nothing (their requests carry Basic credentials or a bearer
token: ``auth_headers``, ``sparkpost_headers``, ``brevo_headers``).

The factories live in :mod:`bounce_middleware.samples` (the command line uses
them too); they are re-exported here, where users' tests import them.
"""

from __future__ import annotations

from .samples import (
    POSTMARK_TYPES,
    basic_auth_header,
    postmark_bounce,
    postmark_click,
    postmark_delivery,
    postmark_inbound,
    postmark_legacy_bounce,
    postmark_open,
    postmark_payload,
    postmark_spam_complaint,
    postmark_subscription_change,
)
from .samples.amazon_ses import (
    SES_KINDS,
    TEST_SNS_CERT_URL,
    TEST_SNS_CERTIFICATE_PEM,
    TEST_SNS_PRIVATE_KEY_PEM,
    TEST_SNS_TOPIC_ARN,
    SNSTestFetcher,
    ses_bounce,
    ses_complaint,
    ses_delivery_delay,
    ses_event,
    ses_notification,
    sign_envelope,
    sns_notification,
    sns_subscription_confirmation,
)
from .samples.amazon_ses import sign_request as sign_ses_request
from .samples.amazon_ses import test_fetcher as sns_test_fetcher
from .samples.brevo import brevo_batch, brevo_body, brevo_event, brevo_headers, brevo_request
from .samples.mailgun import MAILGUN_KINDS, mailgun_event
from .samples.mailgun import sign_request as sign_mailgun_request
from .samples.mailjet import mailjet_batch, mailjet_body, mailjet_event
from .samples.mandrill import mandrill_batch, mandrill_body, mandrill_event
from .samples.mandrill import sign_request as sign_mandrill_request
from .samples.resend import resend_event
from .samples.resend import sign_request as sign_resend_request
from .samples.sendgrid import (
    SENDGRID_KINDS,
    sendgrid_batch,
    sendgrid_body,
    sendgrid_event,
)
from .samples.sendgrid import TEST_PRIVATE_KEY_PEM as SENDGRID_TEST_PRIVATE_KEY_PEM
from .samples.sendgrid import TEST_PUBLIC_KEY as SENDGRID_TEST_PUBLIC_KEY
from .samples.sendgrid import sign_request as sign_sendgrid_request
from .samples.sparkpost import PING as SPARKPOST_PING
from .samples.sparkpost import (
    sparkpost_batch,
    sparkpost_body,
    sparkpost_event,
    sparkpost_headers,
    sparkpost_request,
)

__all__ = [
    "SPARKPOST_PING",
    "brevo_batch",
    "brevo_body",
    "brevo_event",
    "brevo_headers",
    "brevo_request",
    "mailjet_batch",
    "mailjet_body",
    "mailjet_event",
    "mandrill_batch",
    "mandrill_body",
    "mandrill_event",
    "sign_mandrill_request",
    "resend_event",
    "sign_resend_request",
    "sparkpost_batch",
    "sparkpost_body",
    "sparkpost_event",
    "sparkpost_headers",
    "sparkpost_request",
    "MAILGUN_KINDS",
    "SENDGRID_KINDS",
    "SENDGRID_TEST_PRIVATE_KEY_PEM",
    "SENDGRID_TEST_PUBLIC_KEY",
    "SES_KINDS",
    "SNSTestFetcher",
    "TEST_SNS_CERTIFICATE_PEM",
    "TEST_SNS_CERT_URL",
    "TEST_SNS_PRIVATE_KEY_PEM",
    "TEST_SNS_TOPIC_ARN",
    "mailgun_event",
    "sendgrid_batch",
    "sendgrid_body",
    "sendgrid_event",
    "ses_bounce",
    "ses_complaint",
    "ses_delivery_delay",
    "ses_event",
    "ses_notification",
    "sign_envelope",
    "sign_mailgun_request",
    "sign_sendgrid_request",
    "sign_ses_request",
    "sns_notification",
    "sns_subscription_confirmation",
    "sns_test_fetcher",
    "auth_headers",
    "basic_auth_header",
    "postmark_bounce",
    "postmark_click",
    "postmark_delivery",
    "postmark_inbound",
    "postmark_legacy_bounce",
    "postmark_open",
    "postmark_payload",
    "postmark_spam_complaint",
    "postmark_subscription_change",
    "POSTMARK_TYPES",
]


def auth_headers(user: str, password: str) -> dict[str, str]:
    """``{"Authorization": ...}`` ready for WebTest's ``headers=`` argument."""
    return {"Authorization": basic_auth_header(user, password)}
