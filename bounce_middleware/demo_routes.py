"""The demo's webhook routes: one per provider, each accepting ``bounce-middleware send``.

Postmark checks HTTP Basic credentials; Mailgun a signing key made for each
run of the demo; SendGrid and Amazon SES verify the samples' published TEST
signing material (:mod:`bounce_middleware.samples.sendgrid`,
:mod:`bounce_middleware.samples.amazon_ses`), so these two routes accept
anyone's requests: they are for a demo on localhost, never for production.

This module imports no provider until routes are built: ``send`` reads
:data:`DEMO_PATHS` at every start.
"""

from __future__ import annotations

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
    }
)
#: The Basic user name of the demo's Postmark route.
DEMO_USER = "postmark"


def demo_routes(
    *, credentials: Iterable[str], mailgun_signing_key: str
) -> tuple[dict[str, Provider], dict[str, str]]:
    """The demo's routes ``{path: provider}``, and why any provider is left out.

    SendGrid and Amazon SES need the ``crypto`` extra; without it the demo
    serves the others and the second mapping says, by provider name, what to
    install.
    """
    from .providers import Mailgun, Postmark

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
    return routes, missing


def _sendgrid() -> Provider:
    from .providers import SendGrid
    from .samples.sendgrid import TEST_PUBLIC_KEY

    return SendGrid(public_key=TEST_PUBLIC_KEY)


def _amazon_ses() -> Provider:
    from .providers import AmazonSES
    from .samples.amazon_ses import TEST_SNS_TOPIC_ARN, test_fetcher

    return AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=test_fetcher)
