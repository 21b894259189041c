"""Brevo's de-duplication keys (it gives no event id), the provider's construction and the
samples of ``bounce_middleware.samples.brevo``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from bounce_middleware import BounceKind, ConfigurationError
from bounce_middleware.providers import Provider
from bounce_middleware.providers.brevo import Brevo, parse_brevo
from bounce_middleware.samples import basic_auth_header
from bounce_middleware.samples.brevo import (
    SAMPLE_KINDS,
    WEBHOOK_ID,
    brevo_body,
    brevo_event,
    brevo_headers,
    sample_request,
)
from tests.test_provider_brevo import EVENT, body, one

K = BounceKind


# -- de-duplication -------------------------------------------------------------------------


def test_the_key_is_a_digest_of_message_id_event_email_and_ts_epoch() -> None:
    bounce = one(EVENT)
    identity = [EVENT["message-id"], "hard_bounce", "ann@example.com", 1704209405123]
    assert bounce.dedup_id == json.dumps(identity, separators=(",", ":"))
    digest = hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode()).hexdigest()
    assert bounce.key == f"brevo:dedup-sha256:{digest}"
    assert "ann@example.com" not in bounce.key


def test_the_same_event_has_the_same_key_whatever_else_differs() -> None:
    first = one(EVENT)
    # The webhook's id, the account-timezone fields and the order of keys do not identify it.
    again = one(dict(reversed(list((EVENT | {"id": 1, "date": "x", "ts": 0}).items()))))
    assert again.key == first.key
    # Retried alone or inside a batch: the same event.
    [in_batch] = parse_brevo(body(EVENT)).events
    assert in_batch.key == first.key and in_batch == first


@pytest.mark.parametrize(
    "fields",
    [
        {"message-id": "<other@smtp-relay.mailin.fr>"},
        {"event": "soft_bounce"},
        {"email": "bob@example.com"},
        {"ts_epoch": 1704209405124},
        {"message-id": None},
    ],
)
def test_events_differing_in_what_identifies_them_have_different_keys(
    fields: dict[str, Any],
) -> None:
    event = {k: v for k, v in (EVENT | fields).items() if v is not None}
    assert one(event).key != one(EVENT).key


def test_without_ts_epoch_the_time_field_it_has_identifies_it() -> None:
    base = {k: v for k, v in EVENT.items() if k not in ("ts_epoch", "ts_event", "ts")}
    by_event = one(base | {"ts_event": 1704209405})
    assert by_event.dedup_id == json.dumps(
        [EVENT["message-id"], "hard_bounce", "ann@example.com", None, "ts_event", 1704209405],
        separators=(",", ":"),
    )
    keys = {
        by_event.key,
        one(base | {"ts_event": 1704209406}).key,
        one(base | {"ts": 1704209405}).key,
        one(base | {"ts_epoch": 1704209405}).key,
        one(base).key,
    }
    assert len(keys) == 5


# -- the provider ---------------------------------------------------------------------------


def test_the_provider_keeps_the_protocol_and_answers_429_for_retries() -> None:
    provider = Brevo(tokens=["a-long-random-token-0123456789"])
    assert isinstance(provider, Provider)
    assert (provider.name, provider.methods, provider.refuse_status) == (
        "brevo",
        frozenset({"POST"}),
        400,
    )
    assert provider.retry_status == 429
    assert Brevo.options == {"credentials": "credentials", "tokens": "list", "realm": "str"}


def test_without_credentials_or_tokens_the_route_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="Brevo: no credentials and no tokens"):
        Brevo()
    with pytest.raises(ConfigurationError, match="token 1 must be printable ASCII"):
        Brevo(tokens=["has space"])


# -- samples --------------------------------------------------------------------------------

SAMPLE_EXPECTED = {
    "hard": K.HARD,
    "soft": K.SOFT,
    "deferred": K.SOFT,
    "suppressed": K.SUPPRESSED,
    "invalid": K.HARD,
    "complaint": K.COMPLAINT,
    "unsubscribe": K.UNSUBSCRIBE,
    "error": K.ERROR,
    "delivered": None,
    "opened": None,
}


def test_every_sample_kind_parses_to_its_kind() -> None:
    assert tuple(SAMPLE_EXPECTED) == SAMPLE_KINDS
    for kind, expected in SAMPLE_EXPECTED.items():
        parsed = parse_brevo(brevo_body(brevo_event(kind, email="ann@example.com")))
        if expected is None:
            assert len(parsed.acknowledged) == 1 and parsed.events == ()
        else:
            [bounce] = parsed.events
            assert (bounce.kind, bounce.email) == (expected, "ann@example.com")
            assert bounce.metadata == {"user_id": "42"}
            assert bounce.tags == ("welcome",)


def test_samples_look_like_brevo_events_and_differ_per_call() -> None:
    event = brevo_event()
    assert event["id"] == WEBHOOK_ID
    assert event["ts_epoch"] > 10**12  # milliseconds
    assert event["ts_epoch"] // 1000 == event["ts_event"]
    assert one(brevo_event()).key != one(brevo_event()).key
    removed: dict[str, Any] = {"message-id": None}
    assert "message-id" not in brevo_event("hard", **removed)
    with pytest.raises(ValueError, match="unknown Brevo sample 'nope'"):
        brevo_event("nope")


def test_sample_request_sends_the_bearer_token_or_no_authorization() -> None:
    headers, raw = sample_request("complaint", email="bob@example.com", secret="tok-123")
    assert headers == {"Content-Type": "application/json", "Authorization": "Bearer tok-123"}
    assert one(json.loads(raw)).kind is K.COMPLAINT
    headers, _ = sample_request(email="bob@example.com", secret=None)
    assert headers == {"Content-Type": "application/json"}
    assert brevo_headers(credentials="brevo:pw")["Authorization"] == "Basic YnJldm86cHc="
    # The shared header builder (UTF-8, RFC 7617), as SparkPost's samples use it.
    basic = brevo_headers(credentials="brevo:p\u00e4ss:word")["Authorization"]
    assert basic == basic_auth_header("brevo", "p\u00e4ss:word")
    with pytest.raises(ValueError, match='credentials must be "user:password"'):
        brevo_headers(credentials="no-colon")
    with pytest.raises(ValueError, match="not both"):
        brevo_headers(token="t", credentials="brevo:pw")
