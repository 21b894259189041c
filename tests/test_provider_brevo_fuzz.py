"""Property tests: whatever a Brevo body holds, parse raises nothing but PayloadError, every
event is accounted for, what it keeps parses again to the same thing, and the middleware
answers Brevo nothing but 200, 400 or 401 (never a 5xx, which Brevo would drop).

The example count is ``BOUNCE_HYPOTHESIS_EXAMPLES`` (default 40 per test, as in
``test_properties.py``); raise it for a thorough run.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, PayloadError
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.brevo import Brevo, parse_brevo
from bounce_middleware.samples.brevo import SAMPLE_KINDS, brevo_body, brevo_event, brevo_headers
from tests.store_apps import downstream

EXAMPLES = int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40"))
PROFILE = settings(
    max_examples=EXAMPLES,
    # Example times vary with the machine; a deadline would only make CI flaky.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATH = "/hooks/brevo"
TOKEN = "brevo-fuzz-tests-bearer-token"
FIELDS = [
    "event", "email", "message-id", "ts_epoch", "ts_event", "ts", "date", "reason", "tags",
    "tag", "X-Mailin-custom", "id", "subject", "items",
]  # fmt: skip
EVENT_NAMES = ["hard_bounce", "soft_bounce", "invalid_email", "deferred", "blocked", "spam"]
EVENT_NAMES += ["complaint", "unsubscribed", "error", "delivered", "opened", "click", "HARD_BOUNCE"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "1685543827372",
            "1604933623",
            '["a","b"]',
            '{"k": "v"}',
            '{"k": 1}',
            "[",
            "{",
            "\ud800",
            '["\\ud800"]',
            '{"k": "\\udfff"}',
            "[" * 30 + "]" * 30,
            "9" * 20,
        ]
    )  # fmt: skip
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Events that look like Brevo's: its field names, plausible and implausible values.
event_like = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)).flatmap(
    lambda fields: st.builds(
        lambda name, keep: fields | ({"event": name} if keep else {}),
        st.sampled_from(EVENT_NAMES) | st.text(max_size=12),
        st.booleans(),
    )
)
# Real sample events with one field replaced or removed.
mutated_samples = st.builds(
    lambda kind, field, value, drop: _mutate(brevo_event(kind), field, value, drop),
    st.sampled_from(SAMPLE_KINDS),
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


def _dumps(value: Any) -> bytes:
    # allow_nan: Infinity/NaN literals reach the parser too, which refuses them.
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def _parse(body: bytes) -> Parsed | None:
    try:
        return parse_brevo(body)
    except PayloadError as exc:
        assert exc.reason and "\n" not in exc.reason
        return None


def _check_events(parsed: Parsed) -> None:
    for bounce in parsed.events:
        assert bounce.email and bounce.key.startswith("brevo:dedup-sha256:")
        assert bounce.bounced_at is None or bounce.bounced_at.tzinfo is not None
        assert all(type(tag) is str for tag in bounce.tags)
        assert all(type(v) is str for v in bounce.metadata.values())
        bounce.body.decode("utf-8")  # every store can keep it
        assert parse_brevo(bounce.body).events == (bounce,)  # replay: the same event


@PROFILE
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_payload_error(body: bytes) -> None:
    _parse(body)


@PROFILE
@given(event_like | mutated_samples)
def test_a_single_event_is_dispatched_acknowledged_or_refused_whole(item: dict[str, Any]) -> None:
    parsed = _parse(_dumps(item))
    if parsed is None:
        return
    assert len(parsed.events) + len(parsed.acknowledged) == 1 and parsed.rejected == ()
    _check_events(parsed)


@PROFILE
@given(st.lists(events, max_size=6))
def test_every_event_of_a_batch_is_dispatched_acknowledged_or_refused_alone(
    items: list[Any],
) -> None:
    parsed = _parse(_dumps(items))
    if parsed is None:
        return  # only a body the decoder refuses whole (NaN, Infinity)
    assert len(parsed.events) + len(parsed.acknowledged) + len(parsed.rejected) == len(items)
    assert bool(parsed.handshake) == (not items)  # an empty array is a ping
    _check_events(parsed)
    for rejection in parsed.rejected:
        assert rejection.reason and "\n" not in rejection.reason
        assert parse_brevo(rejection.body).rejected == (rejection,)


@PROFILE
@given(st.lists(events, max_size=6) | events, st.booleans())
def test_the_middleware_answers_200_or_400_and_runs_nothing_unless_200(
    payload: Any, whole_body_garbage: bool
) -> None:
    calls: list[str] = []

    def handler(bounce: Bounce) -> None:
        calls.append(bounce.key)

    app = TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: Brevo(tokens=[TOKEN])},
            handlers=[handler],
            store=MemoryStore(),
        )
    )
    body = b"\x00not json" if whole_body_garbage else _dumps(payload)
    headers = brevo_headers(token=TOKEN)
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int in (200, 400)
    if response.status_int != 200:
        assert calls == []


# What a WSGI server can hand over as a header value: latin-1, no line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120)


@PROFILE
@given(header_text | st.none(), st.binary(max_size=200))
def test_unauthenticated_requests_get_401_whatever_their_headers(
    authorization: str | None, body: bytes
) -> None:
    provider = Brevo(tokens=[TOKEN], credentials=["brevo:brevo-fuzz-tests-password"])
    app = TestApp(BounceMiddleware(downstream, routes={PATH: provider}))
    headers = {} if authorization is None else {"Authorization": authorization}
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int == 401


def test_a_full_batch_of_500_events_parses_each_event_on_its_own() -> None:
    batch = [brevo_event(SAMPLE_KINDS[i % len(SAMPLE_KINDS)]) for i in range(500)]
    started = time.perf_counter()
    parsed = parse_brevo(brevo_body(batch))
    elapsed = time.perf_counter() - started
    assert len(parsed.events) + len(parsed.acknowledged) == 500
    assert len({bounce.key for bounce in parsed.events}) == len(parsed.events)
    assert elapsed < 5  # generous: a sanity bound, not a benchmark
