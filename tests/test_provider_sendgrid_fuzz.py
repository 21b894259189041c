"""Property tests: whatever a SendGrid body holds, parse raises nothing but PayloadError,
every event is accounted for, and the middleware never answers 5xx.

The example count is ``BOUNCE_HYPOTHESIS_EXAMPLES`` (default 40 per test, as
in ``test_properties.py``); raise it for a thorough run.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, PayloadError
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.sendgrid import SendGrid, parse_sendgrid
from bounce_middleware.samples.sendgrid import (
    SENDGRID_KINDS,
    TEST_PUBLIC_KEY,
    sendgrid_body,
    sendgrid_event,
    sign_request,
)
from bounce_middleware.signatures.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.store_apps import downstream

EXAMPLES = int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40"))
PROFILE = settings(
    max_examples=EXAMPLES,
    # Example times vary with the machine; a deadline would only make CI flaky.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATH = "/hooks/sendgrid"
FIELDS = [
    "email", "timestamp", "event", "smtp-id", "sg_event_id", "sg_message_id", "reason",
    "status", "response", "type", "bounce_classification", "category", "attempt", "userid",
]  # fmt: skip
EVENT_NAMES = ["bounce", "dropped", "deferred", "spamreport", "unsubscribe", "group_unsubscribe"]
EVENT_NAMES += ["group_resubscribe", "processed", "delivered", "open", "click", "Bounce", ""]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["5.0.0", "Bounced Address", "Invalid", "blocked", "1513299569", "\ud800"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Events that look like SendGrid's: its field names, plausible and implausible values.
event_like = st.dictionaries(
    st.sampled_from(FIELDS),
    json_values,
    max_size=len(FIELDS),
).flatmap(
    lambda fields: st.builds(
        lambda name, keep: fields | ({"event": name} if keep else {}),
        st.sampled_from(EVENT_NAMES) | st.text(max_size=12),
        st.booleans(),
    )
)
# Real sample events with one field replaced or removed.
mutated_samples = st.builds(
    lambda kind, field, value, drop: _mutate(sendgrid_event(kind), field, value, drop),
    st.sampled_from(SENDGRID_KINDS),
    st.sampled_from(FIELDS),
    json_values,
    st.booleans(),
)
events = event_like | mutated_samples | json_values


def _mutate(event: dict[str, Any], field: str, value: Any, drop: bool) -> dict[str, Any]:
    if drop:
        event.pop(field, None)
    else:
        event[field] = value
    return event


def _dumps(items: list[Any]) -> bytes:
    # allow_nan: Infinity/NaN literals reach the parser too, which refuses them.
    return json.dumps(items, allow_nan=True).encode("utf-8", "surrogatepass")


def _parse(body: bytes) -> Parsed | None:
    try:
        return parse_sendgrid(body)
    except PayloadError as exc:
        assert exc.reason and "\n" not in exc.reason
        return None


@PROFILE
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_payload_error(body: bytes) -> None:
    _parse(body)


@PROFILE
@given(st.lists(events, max_size=6))
def test_every_event_of_an_array_is_dispatched_acknowledged_or_refused_alone(
    items: list[Any],
) -> None:
    body = _dumps(items)
    parsed = _parse(body)
    if parsed is None:
        return  # only a body the decoder refuses whole (NaN, Infinity)
    assert len(parsed.events) + len(parsed.acknowledged) + len(parsed.rejected) == len(items)
    assert bool(parsed.handshake) == (not items)  # an empty array is a ping
    for bounce in parsed.events:
        assert bounce.email and bounce.key.startswith("sendgrid:")
        bounce.body.decode("utf-8")  # every store can keep it
        assert parse_sendgrid(bounce.body).events == (bounce,)  # replay: the same event
    for rejection in parsed.rejected:
        assert rejection.reason and "\n" not in rejection.reason
        again = parse_sendgrid(rejection.body)
        assert again.rejected == (rejection,)


@PROFILE
@given(st.lists(events, max_size=6), st.booleans())
def test_the_middleware_never_answers_5xx_and_runs_nothing_unless_200(
    items: list[Any], whole_body_garbage: bool
) -> None:
    calls: list[str] = []

    def handler(bounce: Bounce) -> None:
        calls.append(bounce.key)

    app = TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: SendGrid(public_key=TEST_PUBLIC_KEY)},
            handlers=[handler],
            store=MemoryStore(),
        )
    )
    body = b"\x00not json" if whole_body_garbage else _dumps(items)
    headers, body = sign_request(body)
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int in (200, 400)
    if response.status_int != 200:
        assert calls == []


# What a WSGI server can hand over as a header value: latin-1, no line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120)


@PROFILE
@given(
    header_text | st.none(),
    header_text | st.from_regex(r"\A[0-9]{1,14}\Z") | st.none(),
    st.binary(max_size=200),
)
def test_unauthenticated_requests_get_401_whatever_their_headers(
    signature: str | None, timestamp: str | None, body: bytes
) -> None:
    provider = SendGrid(public_key=TEST_PUBLIC_KEY)
    app = TestApp(BounceMiddleware(downstream, routes={PATH: provider}))
    headers = {}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    if timestamp is not None:
        headers[TIMESTAMP_HEADER] = timestamp
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int == 401


def test_a_thousand_event_batch_parses_each_event_on_its_own() -> None:
    batch = [sendgrid_event(SENDGRID_KINDS[i % len(SENDGRID_KINDS)]) for i in range(1000)]
    parsed = parse_sendgrid(sendgrid_body(batch))
    assert len(parsed.events) + len(parsed.acknowledged) == 1000
    assert len({bounce.key for bounce in parsed.events}) == len(parsed.events)
