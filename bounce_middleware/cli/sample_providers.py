"""The providers ``send`` knows: how each sample is authenticated, its kinds, and advice.

Postmark's samples are payloads sent with HTTP Basic credentials; every other
provider's come from ``bounce_middleware.samples.<name>.sample_request``
(:mod:`.sample_requests`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class SampleProvider:
    """How ``send`` authenticates one provider's samples, and how a route accepts them.

    ``secret``: ``"basic"`` (Postmark: the route checks HTTP Basic
    credentials, record types pick the sample), ``"credentials"`` (the same
    for a provider with kinds), ``"token"`` (HTTP Basic credentials or the
    route's bearer token, ``--secret``), ``"key"`` (signed with the route's
    own secret, ``--secret``), ``"test"`` (signed with published TEST
    material; ``--secret`` refused) or ``"optional"`` (a provider this table
    does not know: passed on if given). ``signs_url``: the signature covers
    the URL (Mandrill), so ``sample_request`` takes ``url=``.
    """

    name: str
    label: str
    secret: Literal["basic", "credentials", "token", "key", "test", "optional"]
    kinds: tuple[str, ...] = ()
    #: Why a route answers 401 to these samples, and what to do about it.
    refused: str = ""
    signs_url: bool = False


POSTMARK = SampleProvider(
    "postmark",
    "Postmark",
    "basic",
    refused="the route refused these credentials: give the user name and password of its "
    "Postmark(credentials=[...]) with --user and --password, in the URL, or as BOUNCE_USER "
    "and BOUNCE_PASSWORD (and check that the URL is a Postmark route)",
)

_TEST_ROUTE = "`bounce-middleware send --provider {name} --test-route` prints how to configure one"

#: The providers whose samples ``send`` knows, by registered name. The kinds are the
#: samples modules' own (tests/test_cli_send_providers.py compares them).
SAMPLE_PROVIDERS: dict[str, SampleProvider] = {
    "postmark": POSTMARK,
    "sendgrid": SampleProvider(
        "sendgrid",
        "SendGrid",
        "test",
        kinds=(
            "hard",
            "blocked",
            "soft",
            "suppressed",
            "invalid",
            "error",
            "complaint",
            "unsubscribe",
            "group_unsubscribe",
            "subscribe",
            "processed",
            "delivered",
            "open",
            "click",
        ),  # fmt: skip
        refused="the route did not accept the signature: these samples are signed with the "
        "published TEST key, which only a route configured with the TEST public key accepts; "
        "a route with your SendGrid account's key refuses them, as it must. "
        + _TEST_ROUTE.format(name="sendgrid"),
    ),
    "mailgun": SampleProvider(
        "mailgun",
        "Mailgun",
        "key",
        kinds=(
            "hard",
            "soft",
            "suppressed",
            "complaint",
            "unsubscribe",
            "error",
            "delivered",
            "accepted",
            "opened",
            "clicked",
        ),  # fmt: skip
        refused="the route did not accept the signature: --secret (or BOUNCE_SECRET) must be "
        "one of the route's Mailgun(signing_key=...) keys, Mailgun's 'HTTP webhook signing "
        "key', and this machine's clock must be right (the signed time must be recent)",
    ),
    "amazon_ses": SampleProvider(
        "amazon_ses",
        "Amazon SES",
        "test",
        kinds=(
            "hard",
            "soft",
            "blocked",
            "suppressed",
            "unknown",
            "complaint",
            "delay",
            "error",
            "unsubscribe",
            "subscribe",
            "delivery",
            "confirmation",
            "validation",
        ),  # fmt: skip
        refused="the route did not accept the message: these samples are signed with the "
        "published TEST certificate, from the TEST topic, which only a route listing that "
        "topic and fetching certificates with the samples' test fetcher accepts; a production "
        "route refuses them, as it must. " + _TEST_ROUTE.format(name="amazon_ses"),
    ),
    "mailjet": SampleProvider(
        "mailjet",
        "Mailjet",
        "credentials",
        kinds=(
            "hard",
            "soft",
            "blocked",
            "suppressed",
            "error",
            "complaint",
            "unsubscribe",
            "sent",
            "open",
            "click",
        ),  # fmt: skip
        refused="the route refused these credentials: give the user name and password of its "
        "Mailjet(credentials=[...]) with --user and --password, or in the URL",
    ),
    "sparkpost": SampleProvider(
        "sparkpost",
        "SparkPost",
        "token",
        kinds=(
            "hard",
            "soft",
            "blocked",
            "suppressed",
            "admin",
            "delay",
            "complaint",
            "unsubscribe",
            "auto_reply",
            "unknown",
            "error",
            "delivery",
            "open",
        ),  # fmt: skip
        refused="the route refused the request: give one of its SparkPost(tokens=[...]) with "
        "--secret (or BOUNCE_SECRET), or one of its credentials=[...] with --user and --password",
    ),
    "brevo": SampleProvider(
        "brevo",
        "Brevo",
        "token",
        kinds=(
            "hard",
            "soft",
            "deferred",
            "suppressed",
            "invalid",
            "complaint",
            "unsubscribe",
            "error",
            "delivered",
            "opened",
        ),  # fmt: skip
        refused="the route refused the request: give one of its Brevo(tokens=[...]) with "
        "--secret (or BOUNCE_SECRET), or one of its credentials=[...] with --user and --password",
    ),
    "resend": SampleProvider(
        "resend",
        "Resend",
        "key",
        kinds=(
            "hard",
            "suppressed",
            "soft",
            "delayed",
            "complaint",
            "error",
            "delivered",
            "sent",
        ),  # fmt: skip
        refused="the route did not accept the signature: --secret (or BOUNCE_SECRET) must be "
        "one of the route's Resend(secret=...) signing secrets (whsec_...), and this machine's "
        "clock must be right (Svix's timestamps are accepted for 5 minutes)",
    ),
    "mandrill": SampleProvider(
        "mandrill",
        "Mandrill",
        "key",
        kinds=(
            "hard",
            "soft",
            "deferral",
            "complaint",
            "unsubscribe",
            "suppressed",
            "blacklist",
            "send",
            "delivered",
            "open",
        ),  # fmt: skip
        refused="the route did not accept the signature: --secret (or BOUNCE_SECRET) must be "
        "one of the route's Mandrill(key=...) webhook keys, and the URL signed must be its "
        "url= exactly (send signs the URL it posts to; --signed-url names another)",
        signs_url=True,
    ),
}
