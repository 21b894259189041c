"""What ``send`` posts for each provider: the sample request, and the provider's facts.

Postmark's samples are payloads sent with HTTP Basic credentials. Every other
provider's come signed from ``bounce_middleware.samples.<name>.sample_request``:
SendGrid's and Amazon SES's with published TEST signing material that only a
test route accepts, Mailgun's with the route's own signing key (``--secret``).
A provider registered without a table entry here is still sent, through the
same ``sample_request``, and described generically.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from typing import Any, Literal

from bounce_middleware.errors import ImproperlyInstalled
from bounce_middleware.samples import postmark_payload

from .common import CommandError, printable

DEFAULT_EMAIL = "john@example.com"
# Record shapes that carry an ID and a bounce Type.
WITH_ID = frozenset({"Bounce", "SpamComplaint", "Legacy"})
_TIME_FIELDS = {
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "Legacy": "BouncedAt",
    "SubscriptionChange": "ChangedAt",
    "Delivery": "DeliveredAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One request to post, and what it is, for the ``POST ...`` line."""

    headers: dict[str, str]
    body: bytes
    summary: str


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
}


def sample_provider(name: str) -> SampleProvider:
    """The table entry of provider ``name``, or a generic one for a provider it lacks."""
    known = SAMPLE_PROVIDERS.get(name)
    if known is not None:
        return known
    return SampleProvider(
        name,
        name,
        "optional",
        refused=f"the route did not accept the request: check that the URL is a {name} route "
        "and, if its provider signs with a shared secret, that --secret is that secret",
    )


def unauthorized_advice(provider: SampleProvider, *, challenge: str, sent_credentials: bool) -> str:
    """One line saying why a route answered 401 to a sample, and what to try."""
    if (
        challenge
        and not sent_credentials
        and provider.secret not in ("basic", "credentials", "token")
    ):
        # HTTP Basic asked for: a Postmark route, or a signed provider's route with credentials.
        return (
            "the route asks for HTTP Basic credentials: pass --user and --password (or put "
            f"them in the URL) if its {provider.label} provider has credentials=[...]; a "
            "Postmark route asks for them too (--provider postmark)"
        )
    return provider.refused


def signed_sample(
    provider: SampleProvider, kind: str, *, email: str, secret: str | None, url: str | None = None
) -> Sample:
    """The provider's signed sample of ``kind``, from its samples module's ``sample_request``."""
    module_name = f"bounce_middleware.samples.{provider.name}"
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        module = None
    sample_request = getattr(module, "sample_request", None)
    if sample_request is None:
        raise CommandError(f"send has no samples for provider {provider.name} yet")
    try:
        extra = {"url": url} if provider.signs_url else {}
        headers, body = sample_request(kind, email=email, secret=secret, **extra)
    except ImproperlyInstalled as exc:
        raise CommandError(str(exc)) from None
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("cryptography"):
            raise
        raise CommandError(str(ImproperlyInstalled("crypto", "cryptography"))) from None
    except ValueError as exc:  # an unknown kind, or a secret of the wrong shape
        raise CommandError(str(exc)) from None
    return Sample(dict(headers), body, f"{provider.label} {kind} for {printable(email)}")


def postmark_sample(
    record_type: str, bounce_type: str | None, *, email: str | None, event_id: int | None
) -> Sample:
    """A Postmark payload as JSON (the Basic credentials come with the target)."""
    payload = make_payload(record_type, bounce_type, email=email, event_id=event_id)
    return Sample(
        {"Content-Type": "application/json"},
        json.dumps(payload).encode("utf-8"),
        _describe(record_type, payload),
    )


def make_payload(
    record_type: str, bounce_type: str | None, *, email: str | None, event_id: int | None
) -> dict[str, Any]:
    """A Postmark payload of ``record_type``, stamped now, with a fresh ID unless given."""
    overrides: dict[str, Any] = {}
    if bounce_type is not None:
        overrides["type"] = bounce_type
    if email is not None:
        overrides["email"] = email
    if record_type in WITH_ID:
        # A fresh ID per run: the store de-duplicates by ID, so a fixed one (Postmark's
        # test button sends 42) would be "already processed" from the second send on.
        overrides["ID"] = (
            event_id if event_id is not None else 1_000_000_000 + secrets.randbelow(9_000_000_000)
        )
    if record_type in _TIME_FIELDS:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        overrides[_TIME_FIELDS[record_type]] = now
    return postmark_payload(record_type, **overrides)


def _describe(record_type: str, payload: dict[str, Any]) -> str:
    email = payload.get("Email", payload.get("Recipient", payload.get("From", "")))
    what = record_type if record_type not in ("Bounce", "Legacy") else payload["Type"]
    event = f", ID {payload['ID']}" if "ID" in payload else ""
    return f"{what} for {printable(str(email))}{event}"
