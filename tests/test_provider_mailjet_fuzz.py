"""Property tests: whatever a Mailjet body holds, parse raises nothing but PayloadError,
every event of a grouped batch is accounted for, and the middleware never answers 5xx.

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
from bounce_middleware.providers.mailjet import Mailjet, parse_mailjet
from bounce_middleware.samples.mailjet import SAMPLE_KINDS, mailjet_body, mailjet_event
from bounce_middleware.testing import basic_auth_header
from tests.store_apps import downstream

EXAMPLES = int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40"))
PROFILE = settings(
    max_examples=EXAMPLES,
    # Example times vary with the machine; a deadline would only make CI flaky.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATH = "/hooks/mailjet"
USER, PASSWORD = "mailjet", "mailjet-fuzz-tests-password"
AUTH = {"Authorization": basic_auth_header(USER, PASSWORD)}
FIELDS = [
    "event", "time", "MessageID", "Message_GUID", "mj_message_id", "email", "hard_bounce",
    "blocked", "error_related_to", "error", "comment", "source", "customcampaign", "CustomID",
    "Payload", "mj_campaign_id", "mj_list_id",
]  # fmt: skip
EVENT_NAMES = ["bounce", "blocked", "spam", "unsub", "sent", "open", "click", "Bounce", ""]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["spam", "content", "duplicate in campaign", "preblocked", "policy issue", "\ud800"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Events that look like Mailjet's: its field names, plausible and implausible values.
event_like = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)).flatmap(
    lambda fields: st.builds(
        lambda name, keep: fields | ({"event": name} if keep else {}),
        st.sampled_from(EVENT_NAMES) | st.text(max_size=12),
        st.booleans(),
    )
)
# Real sample events with one field replaced or removed.
mutated_samples = st.builds(
    lambda kind, field, value, drop: _mutate(mailjet_event(kind), field, value, drop),
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


def _dumps(payload: Any) -> bytes:
    # allow_nan: Infinity/NaN literals reach the parser too, which refuses them.
    return json.dumps(payload, allow_nan=True).encode("utf-8", "surrogatepass")


def _parse(body: bytes) -> Parsed | None:
    try:
        return parse_mailjet(body)
    except PayloadError as exc:
        assert exc.reason and "\n" not in exc.reason
        return None


def _check_events(parsed: Parsed) -> None:
    for bounce in parsed.events:
        assert bounce.email and bounce.key.startswith("mailjet:dedup-sha256:")
        bounce.body.decode("utf-8")  # every store can keep it
        assert parse_mailjet(bounce.body).events == (bounce,)  # replay: the same event
        message_id = bounce.raw.get("MessageID")
        if type(message_id) is int:
            assert bounce.message_id == str(message_id)


@PROFILE
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_payload_error(body: bytes) -> None:
    _parse(body)


@PROFILE
@given(events.filter(lambda item: not isinstance(item, list)))
def test_a_single_event_is_one_event_an_acknowledged_name_or_payload_error(item: Any) -> None:
    parsed = _parse(_dumps(item))
    if parsed is None:
        return
    assert parsed.rejected == () and not parsed.handshake
    assert len(parsed.events) + len(parsed.acknowledged) == 1
    _check_events(parsed)


@PROFILE
@given(st.lists(events, max_size=6))
def test_every_event_of_a_grouped_batch_is_dispatched_acknowledged_or_refused_alone(
    items: list[Any],
) -> None:
    parsed = _parse(_dumps(items))
    if parsed is None:
        return  # only a body the decoder refuses whole (NaN, Infinity)
    assert len(parsed.events) + len(parsed.acknowledged) + len(parsed.rejected) == len(items)
    assert bool(parsed.handshake) == (not items)  # an empty array is a handshake
    _check_events(parsed)
    for rejection in parsed.rejected:
        assert rejection.reason and "\n" not in rejection.reason
        assert parse_mailjet(rejection.body).rejected == (rejection,)


@PROFILE
@given(st.lists(events, max_size=6) | events, st.booleans())
def test_the_middleware_never_answers_5xx_and_runs_nothing_unless_200(
    payload: Any, whole_body_garbage: bool
) -> None:
    calls: list[str] = []

    def handler(bounce: Bounce) -> None:
        calls.append(bounce.key)

    app = TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: Mailjet(credentials=[f"{USER}:{PASSWORD}"])},
            handlers=[handler],
            store=MemoryStore(),
        )
    )
    body = b"\x00not json" if whole_body_garbage else _dumps(payload)
    response = app.request(PATH, method="POST", headers=AUTH, body=body, expect_errors=True)
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
    app = TestApp(
        BounceMiddleware(downstream, routes={PATH: Mailjet(credentials=[f"{USER}:{PASSWORD}"])})
    )
    headers = {} if authorization is None else {"Authorization": authorization}
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int == 401


def test_a_thousand_event_grouped_batch_parses_each_event_on_its_own() -> None:
    batch = [mailjet_event(SAMPLE_KINDS[i % len(SAMPLE_KINDS)]) for i in range(1000)]
    started = time.perf_counter()
    parsed = parse_mailjet(mailjet_body(batch))
    elapsed = time.perf_counter() - started
    assert len(parsed.events) + len(parsed.acknowledged) == 1000
    assert len({bounce.key for bounce in parsed.events}) == len(parsed.events)
    assert elapsed < 5  # generous: a sanity bound, not a benchmark
