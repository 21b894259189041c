"""The demo's webhook routes: one per provider, each accepting ``bounce-middleware send``.

Postmark, Mailjet, SparkPost and Brevo check HTTP Basic credentials; Mailgun,
Resend and Mandrill a signing key made for each run of the demo (Resend's as a
``whsec_`` secret, Mandrill's over the URL it is called by); SendGrid and
Amazon SES verify the samples' published TEST signing material
(:mod:`bounce_middleware.samples.sendgrid`,
:mod:`bounce_middleware.samples.amazon_ses`), so these two routes accept
anyone's requests: they are for a demo on localhost, never for production.

This module imports no provider until routes are built: ``send`` reads
:data:`DEMO_PATHS` at every start.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from .errors import ImproperlyInstalled

if TYPE_CHECKING:
    from .providers import Provider

#: The path of each provider's route in the demo (and in ``send``'s advice).
DEMO_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "postmark": "/postmark/bounce",
        "sendgrid": "/sendgrid/bounce",
        "mailgun": "/mailgun/bounce",
        "amazon_ses": "/ses/bounce",
        "mailjet": "/mailjet/bounce",
        "sparkpost": "/sparkpost/bounce",
        "brevo": "/brevo/bounce",
        "resend": "/resend/bounce",
        "mandrill": "/mandrill/bounce",
    }
)
#: The Basic user name of the demo's routes that check credentials (Postmark's first).
DEMO_USER = "postmark"


def demo_routes(
    *, credentials: Iterable[str], mailgun_signing_key: str
) -> tuple[dict[str, Provider], dict[str, str]]:
    """The demo's routes ``{path: provider}``, and why any provider is left out.

    SendGrid and Amazon SES need the ``crypto`` extra; without it the demo
    serves the others and the second mapping says, by provider name, what to
    install.
    """
    from .providers import Brevo, Mailgun, Mailjet, Mandrill, Postmark, Resend, SparkPost

    credentials = list(credentials)
    routes: dict[str, Provider] = {
        DEMO_PATHS["postmark"]: Postmark(credentials=credentials),
        DEMO_PATHS["mailgun"]: Mailgun(signing_key=mailgun_signing_key),
    }
    missing: dict[str, str] = {}
    for name, build in (("sendgrid", _sendgrid), ("amazon_ses", _amazon_ses)):
        try:
            routes[DEMO_PATHS[name]] = build()
        except ImproperlyInstalled as exc:
            missing[name] = str(exc)
    routes[DEMO_PATHS["mailjet"]] = Mailjet(credentials=credentials)
    routes[DEMO_PATHS["sparkpost"]] = SparkPost(credentials=credentials)
    routes[DEMO_PATHS["brevo"]] = Brevo(credentials=credentials)
    routes[DEMO_PATHS["resend"]] = Resend(secret=resend_secret(mailgun_signing_key))
    # No url=: on localhost the URL Mandrill (here, send) signs is the one the demo sees.
    routes[DEMO_PATHS["mandrill"]] = Mandrill(key=mailgun_signing_key)
    return routes, missing


def resend_secret(signing_key: str) -> str:
    """The demo's signing key as a Resend (Svix) secret: ``whsec_`` and base64."""
    return "whsec_" + base64.b64encode(signing_key.encode("utf-8")).decode("ascii")


def _sendgrid() -> Provider:
    from .providers import SendGrid
    from .samples.sendgrid import TEST_PUBLIC_KEY

    return SendGrid(public_key=TEST_PUBLIC_KEY)


def _amazon_ses() -> Provider:
    from .providers import AmazonSES
    from .samples.amazon_ses import TEST_SNS_TOPIC_ARN, test_fetcher

    return AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=test_fetcher)
