"""Property tests: whatever a SparkPost body holds, parse raises nothing but PayloadError,
every element is accounted for, and the middleware never answers 5xx; whatever the headers,
an unauthenticated request gets 401.

The example count is ``BOUNCE_HYPOTHESIS_EXAMPLES`` (default 40 per test, as
in ``test_properties.py``); raise it for a thorough run.
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
from bounce_middleware.providers.sparkpost import TOKEN_HEADER, SparkPost, parse_sparkpost
from bounce_middleware.samples.sparkpost import (
    SAMPLE_KINDS,
    sparkpost_body,
    sparkpost_event,
    sparkpost_headers,
)
from tests.store_apps import downstream

EXAMPLES = int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40"))
PROFILE = settings(
    max_examples=EXAMPLES,
    # Example times vary with the machine; a deadline would only make CI flaky.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATH = "/hooks/sparkpost"
TOKEN = "sp-fuzz-token-7d1e0c4b9a8f"
CREDENTIALS = "sparkpost:sp-fuzz-password-3c5e"
FIELDS = [
    "type", "bounce_class", "event_id", "timestamp", "raw_rcpt_to", "rcpt_to", "transmission_id",
    "message_id", "raw_reason", "reason", "error_code", "rcpt_tags", "rcpt_meta", "campaign_id",
    "fbtype", "subject",
]  # fmt: skip
TYPES = ["bounce", "out_of_band", "delay", "policy_rejection", "spam_complaint", "delivery"]
TYPES += ["list_unsubscribe", "link_unsubscribe", "generation_failure", "open", "Bounce", ""]
CLASSES = ["message_event", "track_event", "unsubscribe_event", "gen_event", "relay_message"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["10", "22", "25", "100", "not-spam", "1712345678", "9" * 20, "\ud800"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Events that look like SparkPost's: its field names, plausible and implausible values.
event_like = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)).flatmap(
    lambda fields: st.builds(
        lambda name, keep: fields | ({"type": name} if keep else {}),
        st.sampled_from(TYPES) | st.text(max_size=12),
        st.booleans(),
    )
)
wrapped = st.builds(
    lambda cls, event: {"msys": {cls: event}},
    st.sampled_from(CLASSES) | st.text(max_size=8),
    event_like | json_values,
)
# Real sample elements with one field of the event replaced or removed.
mutated_samples = st.builds(
    lambda kind, field, value, drop: _mutate(sparkpost_event(kind), field, value, drop),
    st.sampled_from(SAMPLE_KINDS),
    st.sampled_from(FIELDS),
    json_values,
    st.booleans(),
)
elements: st.SearchStrategy[Any] = (
    wrapped
    | mutated_samples
    | st.just({"msys": {}})
    | st.dictionaries(st.sampled_from(["msys", "x"]), json_values, max_size=2)
    | json_values
)


def _mutate(element: dict[str, Any], field: str, value: Any, drop: bool) -> dict[str, Any]:
    [event] = element["msys"].values()
    if drop:
        event.pop(field, None)
    else:
        event[field] = value
    return element


def _dumps(items: list[Any]) -> bytes:
    # allow_nan: Infinity/NaN literals reach the parser too, which refuses them.
    return json.dumps(items, allow_nan=True).encode("utf-8", "surrogatepass")


def _parse(body: bytes) -> Parsed | None:
    try:
        return parse_sparkpost(body)
    except PayloadError as exc:
        assert exc.reason and "\n" not in exc.reason
        return None


@PROFILE
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_payload_error(body: bytes) -> None:
    _parse(body)


@PROFILE
@given(st.lists(elements, max_size=6))
def test_every_element_is_dispatched_acknowledged_or_refused_alone(items: list[Any]) -> None:
    body = _dumps(items)
    parsed = _parse(body)
    if parsed is None:
        return  # only a body the decoder refuses whole (NaN, Infinity)
    if parsed.handshake:
        assert all(type(item) is dict and item.get("msys") == {} for item in items)
        assert not (parsed.events or parsed.acknowledged or parsed.rejected)
        return
    assert len(parsed.events) + len(parsed.acknowledged) + len(parsed.rejected) == len(items)
    for bounce in parsed.events:
        assert bounce.email and bounce.key.startswith("sparkpost:")
        assert bounce.description.isprintable()
        assert bounce.bounced_at is None or bounce.bounced_at.tzinfo is not None
        bounce.body.decode("utf-8")  # every store can keep it
        assert parse_sparkpost(bounce.body).events == (bounce,)  # replay: the same event
    for rejection in parsed.rejected:
        assert rejection.reason and "\n" not in rejection.reason
        assert parse_sparkpost(rejection.body).rejected == (rejection,)


@PROFILE
@given(st.lists(elements, max_size=6), st.booleans())
def test_the_middleware_never_answers_5xx_and_runs_nothing_unless_200(
    items: list[Any], whole_body_garbage: bool
) -> None:
    calls: list[str] = []

    def handler(bounce: Bounce) -> None:
        calls.append(bounce.key)

    app = TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: SparkPost(tokens=[TOKEN])},
            handlers=[handler],
            store=MemoryStore(),
        )
    )
    body = b"\x00not json" if whole_body_garbage else _dumps(items)
    headers = sparkpost_headers(token=TOKEN)
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int in (200, 400)
    if response.status_int != 200:
        assert calls == []


# What a WSGI server can hand over as a header value: latin-1, no line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120)


@PROFILE
@given(
    header_text | st.builds(lambda t: "Bearer " + t, header_text) | st.none(),
    header_text | st.none(),
    st.binary(max_size=200),
)
def test_unauthenticated_requests_get_401_whatever_their_headers(
    authorization: str | None, legacy: str | None, body: bytes
) -> None:
    provider = SparkPost(credentials=[CREDENTIALS], tokens=[TOKEN])
    app = TestApp(BounceMiddleware(downstream, routes={PATH: provider}))
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if legacy is not None:
        headers[TOKEN_HEADER] = legacy
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int == 401


def test_a_thousand_element_batch_parses_each_element_on_its_own() -> None:
    batch = [sparkpost_event(SAMPLE_KINDS[i % len(SAMPLE_KINDS)]) for i in range(1000)]
    started = time.perf_counter()
    parsed = parse_sparkpost(sparkpost_body(batch))
    elapsed = time.perf_counter() - started
    assert len(parsed.events) + len(parsed.acknowledged) == 1000
    assert len({bounce.key for bounce in parsed.events}) == len(parsed.events)
    assert elapsed < 5  # generous: a sanity bound, not a benchmark
