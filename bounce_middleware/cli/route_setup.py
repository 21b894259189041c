"""``send --provider NAME --test-route``: how to configure a route that accepts ``send``'s samples.

SendGrid's and Amazon SES's samples are signed with published TEST material,
so a route accepts them only when configured for it: this prints that
configuration (in Python and as flat settings) and the ``send`` command to try.
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from bounce_middleware.demo_routes import DEMO_PATHS

from .common import PROG

_PLACEHOLDER_SITE = "https://test.example.com"


@dataclass(frozen=True, slots=True)
class RouteSetup:
    """A provider's test route: imports, the provider expression, settings, send options."""

    label: str
    imports: tuple[str, ...]
    provider: str  # the Python expression building the provider
    settings: tuple[tuple[str, str], ...]  # (option, value) under bounce.<name>.
    send_options: tuple[str, ...]
    note: str


def _postmark() -> RouteSetup:
    return RouteSetup(
        "Postmark",
        ("from bounce_middleware.providers import Postmark",),
        'Postmark(credentials=["postmark:A-LONG-RANDOM-PASSWORD"])',
        (("credentials", "postmark:A-LONG-RANDOM-PASSWORD"),),
        ("--user", "postmark", "--password", "A-LONG-RANDOM-PASSWORD"),
        "Postmark signs nothing: its route checks the HTTP Basic credentials that you also "
        "put in the webhook URL in Postmark (https://user:password@host/path).",
    )


def _sendgrid() -> RouteSetup:
    from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY

    return RouteSetup(
        "SendGrid",
        (
            "from bounce_middleware.providers import SendGrid",
            "from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY",
        ),
        "SendGrid(public_key=TEST_PUBLIC_KEY)",
        (("public_key", TEST_PUBLIC_KEY),),
        ("--provider", "sendgrid"),
        "The samples are signed with a TEST key pair published with bounce-middleware "
        "(bounce_middleware.samples.sendgrid): anyone can sign with it, so configure its "
        "public key on a test or staging route only, never in production. The TEST public "
        f"key:\n\n{TEST_PUBLIC_KEY}",
    )


def _mailgun() -> RouteSetup:
    return RouteSetup(
        "Mailgun",
        ("from bounce_middleware.providers import Mailgun",),
        'Mailgun(signing_key="YOUR-SIGNING-KEY")',
        (("signing_key", "YOUR-SIGNING-KEY"),),
        ("--provider", "mailgun", "--secret", "YOUR-SIGNING-KEY"),
        "Mailgun signs with a key it shares with you (its 'HTTP webhook signing key'); "
        "send signs with the key --secret (or BOUNCE_SECRET) gives, so any route with that "
        "key accepts the sample, a production one too: the sample then reaches your handlers.",
    )


def _amazon_ses() -> RouteSetup:
    from bounce_middleware.samples.amazon_ses import TEST_SNS_TOPIC_ARN

    return RouteSetup(
        "Amazon SES",
        (
            "from bounce_middleware.providers import AmazonSES",
            "from bounce_middleware.samples.amazon_ses import TEST_SNS_TOPIC_ARN, test_fetcher",
        ),
        "AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=test_fetcher)",
        (
            ("topic_arns", TEST_SNS_TOPIC_ARN),
            ("fetch", "bounce_middleware.samples.amazon_ses:test_fetcher"),
        ),
        ("--provider", "amazon_ses"),
        "The samples are SNS messages from the TEST topic, signed with a TEST certificate "
        "published with bounce-middleware (bounce_middleware.samples.amazon_ses); the test "
        "fetcher serves that certificate without the network. Anyone can sign with it, so "
        "configure it on a test or staging route only, never in production. The TEST topic: "
        f"{TEST_SNS_TOPIC_ARN}",
    )


def _mailjet() -> RouteSetup:
    return RouteSetup(
        "Mailjet",
        ("from bounce_middleware.providers import Mailjet",),
        'Mailjet(credentials=["mailjet:A-LONG-RANDOM-PASSWORD"])',
        (("credentials", "mailjet:A-LONG-RANDOM-PASSWORD"),),
        ("--provider", "mailjet", "--user", "mailjet", "--password", "A-LONG-RANDOM-PASSWORD"),
        "Mailjet signs nothing: its route checks the HTTP Basic credentials that you also "
        "put in the event URL in Mailjet (https://user:password@host/path).",
    )


def _sparkpost() -> RouteSetup:
    return RouteSetup(
        "SparkPost",
        ("from bounce_middleware.providers import SparkPost",),
        'SparkPost(tokens=["A-LONG-RANDOM-TOKEN"])',
        (("tokens", "A-LONG-RANDOM-TOKEN"),),
        ("--provider", "sparkpost", "--secret", "A-LONG-RANDOM-TOKEN"),
        "SparkPost signs nothing: its route checks HTTP Basic credentials "
        "(credentials=[...], sent with --user and --password) or the bearer token of its "
        "OAuth 2.0 authentication (tokens=[...], sent with --secret).",
    )


def _brevo() -> RouteSetup:
    return RouteSetup(
        "Brevo",
        ("from bounce_middleware.providers import Brevo",),
        'Brevo(tokens=["A-LONG-RANDOM-TOKEN"])',
        (("tokens", "A-LONG-RANDOM-TOKEN"),),
        ("--provider", "brevo", "--secret", "A-LONG-RANDOM-TOKEN"),
        "Brevo signs nothing: its route checks the bearer token configured on the webhook "
        "(tokens=[...], sent with --secret) or HTTP Basic credentials in the webhook URL "
        "(credentials=[...], sent with --user and --password).",
    )


def _resend() -> RouteSetup:
    # A secret of the right shape, made now: a placeholder would not load (whsec_ + base64).
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")
    return RouteSetup(
        "Resend",
        ("from bounce_middleware.providers import Resend",),
        f'Resend(secret="{secret}")',
        (("secret", secret),),
        ("--provider", "resend", "--secret", secret),
        "Resend signs with the webhook's signing secret (whsec_..., shown with the webhook; "
        "above, a new random one for a test route); send signs with the secret --secret (or "
        "BOUNCE_SECRET) gives, so any route with that secret accepts the sample, a "
        "production one too: the sample then reaches your handlers.",
    )


def _mandrill() -> RouteSetup:
    return RouteSetup(
        "Mandrill",
        ("from bounce_middleware.providers import Mandrill",),
        'Mandrill(key="YOUR-WEBHOOK-KEY", url="{url}")',
        (("key", "YOUR-WEBHOOK-KEY"), ("url", "{url}")),
        ("--provider", "mandrill", "--secret", "YOUR-WEBHOOK-KEY"),
        "Mandrill signs the webhook's URL, exactly as entered in Mandrill, with the webhook's "
        "key, so url= must be that URL: behind a proxy the URL the application sees differs. "
        "send signs the URL it posts to (--signed-url names another) with --secret (or "
        "BOUNCE_SECRET).",
    )


_SETUPS = {
    "postmark": _postmark,
    "sendgrid": _sendgrid,
    "mailgun": _mailgun,
    "amazon_ses": _amazon_ses,
    "mailjet": _mailjet,
    "sparkpost": _sparkpost,
    "brevo": _brevo,
    "resend": _resend,
    "mandrill": _mandrill,
}


def route_setup(name: str, url: str | None) -> str:
    """The text ``--test-route`` prints for provider ``name``; ``url`` (if any) names the route."""
    make = _SETUPS.get(name)
    if make is None:
        return (
            f"send signs {name} samples with bounce_middleware.samples.{name}.sample_request; "
            f"see that module, and the {name} section of the README, for a route that accepts them"
        )
    setup = make()
    if url:
        parts = urlsplit(url)
        path = unquote(parts.path) or "/"
        # Credentials in the URL stay out of what is printed.
        site = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    else:
        path = DEMO_PATHS.get(name, f"/hooks/{name}")
        site = _PLACEHOLDER_SITE
    # A provider that signs its URL (Mandrill) is configured with the URL send posts to.
    url = site + path
    settings = "\n".join(
        f"    bounce.{name}.{option} = {value.replace('{url}', url)}"
        for option, value in setup.settings
    )
    send = shlex.join([PROG, "send", url, *setup.send_options])
    code = "\n".join(f"    {line}" for line in setup.imports)
    return (
        f"A route that accepts `{PROG} send --provider {name}`:\n\n"
        f"{code}\n\n"
        f"    routes = {{{json.dumps(path)}: {setup.provider.replace('{url}', url)}}}\n\n"
        "or in flat settings (as in Pyramid's .ini):\n\n"
        f"    bounce.routes = {path} {name}\n"
        f"{settings}\n\n"
        f"then:\n\n    {send}\n\n"
        f"{setup.note}"
    )
