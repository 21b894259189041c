"""What ``send`` posts for each provider: the sample request, and the provider's facts.

Postmark's samples are payloads sent with HTTP Basic credentials. Every other
provider's come signed from ``bounce_middleware.samples.<name>.sample_request``:
SendGrid's and Amazon SES's with published TEST signing material that only a
test route accepts, the others' with the route's own secret (``--secret``).
A provider registered without an entry in :mod:`.sample_providers` is still
sent, through the same ``sample_request``, and described generically.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

from bounce_middleware.errors import ImproperlyInstalled
from bounce_middleware.samples import postmark_payload

from .common import CommandError, printable
from .sample_providers import POSTMARK, SAMPLE_PROVIDERS, SampleProvider

__all__ = [
    "DEFAULT_EMAIL",
    "POSTMARK",
    "SAMPLE_PROVIDERS",
    "WITH_ID",
    "Sample",
    "SampleProvider",
    "postmark_sample",
    "sample_provider",
    "signed_sample",
    "unauthorized_advice",
]

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
