"""Property tests: whatever a Mandrill request holds, parse raises nothing but PayloadError,
authenticate nothing but Unauthorized, every event is accounted for, and the middleware
never answers 5xx.

The example count is ``BOUNCE_HYPOTHESIS_EXAMPLES`` (default 40 per test, as
in ``test_properties.py``); raise it for a thorough run.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qsl, quote_plus

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, PayloadError, Unauthorized
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.mandrill import Mandrill, parse_mandrill
from bounce_middleware.providers.mandrill_form import FormError, decode_form, form_body
from bounce_middleware.request import WebhookRequest, post
from bounce_middleware.samples.mandrill import SAMPLE_KINDS, mandrill_event, sign_request
from tests.store_apps import downstream

EXAMPLES = int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40"))
PROFILE = settings(
    max_examples=EXAMPLES,
    # Example times vary with the machine; a deadline would only make CI flaky.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATH = "/hooks/mandrill"
KEY = "mandrill-fuzz-webhook-key"
URL = "https://example.com/hooks/mandrill"
TOP_FIELDS = ["event", "type", "action", "msg", "reject", "_id", "ts", "url", "ip"]
MSG_FIELDS = [
    "email", "_id", "ts", "diag", "bounce_description", "bgtools_code", "smtp_events", "tags",
    "metadata", "state", "subject",
]  # fmt: skip
NAMES = ["hard_bounce", "soft_bounce", "deferral", "spam", "unsub", "reject", "send", "open"]
NAMES += ["inbound", "blacklist", "whitelist", "denylist", "add", "change", "remove", ""]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(NAMES + ["ann@example.com", "smtp;550 5.1.1 no", "\ud800", "1446357425"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
msg_like = st.dictionaries(st.sampled_from(MSG_FIELDS), json_values, max_size=len(MSG_FIELDS))
# Events that look like Mandrill's: its field names, plausible and implausible values.
event_like = st.dictionaries(
    st.sampled_from(TOP_FIELDS),
    json_values | msg_like | st.sampled_from(NAMES),
    max_size=len(TOP_FIELDS),
)
# Real sample events with one field replaced or removed, at the top or in msg.
mutated_samples = st.builds(
    lambda kind, field, value, drop: _mutate(mandrill_event(kind), field, value, drop),
    st.sampled_from(SAMPLE_KINDS),
    st.sampled_from(TOP_FIELDS + [f"msg.{name}" for name in MSG_FIELDS]),
    json_values,
    st.booleans(),
)
events = event_like | mutated_samples | json_values


def _mutate(event: dict[str, Any], field: str, value: Any, drop: bool) -> dict[str, Any]:
    target = event
    if field.startswith("msg."):
        field = field[4:]
        target = event["msg"] if isinstance(event.get("msg"), dict) else event
    if drop:
        target.pop(field, None)
    else:
        target[field] = value
    return event


def _value(items: list[Any]) -> str:
    # allow_nan: Infinity/NaN literals reach the parser too, which refuses them.
    return json.dumps(items, allow_nan=True)


def _body(value: str) -> bytes:
    return (
        "mandrill_events=" + quote_plus(value, encoding="utf-8", errors="surrogatepass")
    ).encode()


def _parse(body: bytes) -> Parsed | None:
    try:
        return parse_mandrill(body)
    except PayloadError as exc:
        assert exc.reason and "\n" not in exc.reason
        return None


def _reference_form(body: bytes) -> dict[str, str] | None:
    """What the standard library reads strictly (None: refused), a field twice refused."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=20,
        )
    except ValueError:  # UnicodeDecodeError included
        return None
    fields = dict(pairs)
    return fields if len(fields) == len(pairs) else None


def _decoded_form(body: bytes) -> dict[str, str] | None:
    try:
        return decode_form(body)
    except FormError as exc:
        assert exc.reason and "\n" not in exc.reason
        return None


# Form-like text: the characters a form reader interprets, escapes good and bad, raw UTF-8.
form_text = st.lists(
    st.sampled_from(["a", "b", "=", "&", "+", " ", "%", "\\", "\\x41", "é", "€", "\x7f"])
    | st.from_regex(r"\A%[0-9A-Fa-f]{2}\Z")
    | st.sampled_from(["%C3%A9", "%E2%82%AC", "%C3", "%G1", "%2", "%%41", "mandrill_events"]),
    max_size=30,
).map("".join)


@PROFILE
@given(form_text.map(str.encode) | st.binary(max_size=100))
def test_the_form_reader_reads_what_parse_qsl_reads_strictly(body: bytes) -> None:
    assert _decoded_form(body) == _reference_form(body)


@PROFILE
@given(st.text(max_size=100))
def test_a_form_body_of_any_text_reads_back_as_that_text(value: str) -> None:
    body = form_body(value.encode("utf-8"))
    assert _decoded_form(body) == _reference_form(body) == {"mandrill_events": value}


@PROFILE
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_payload_error(body: bytes) -> None:
    _parse(body)


@PROFILE
@given(st.text(max_size=200))
def test_any_form_value_parses_or_raises_payload_error(value: str) -> None:
    _parse(_body(value))


@PROFILE
@given(st.lists(events, max_size=6))
def test_every_event_of_a_batch_is_dispatched_acknowledged_or_refused_alone(
    items: list[Any],
) -> None:
    parsed = _parse(_body(_value(items)))
    if parsed is None:
        return  # only a value the decoder refuses whole (NaN, Infinity)
    assert len(parsed.events) + len(parsed.acknowledged) + len(parsed.rejected) == len(items)
    assert bool(parsed.handshake) == (not items)  # the empty batch is Mandrill's check
    for bounce in parsed.events:
        assert bounce.email and bounce.key.startswith("mandrill:dedup-sha256:")
        assert bounce.dedup_id is not None
        bounce.body.decode("utf-8")  # every store can keep it
        assert parse_mandrill(bounce.body).events == (bounce,)  # replay: the same event
    for rejection in parsed.rejected:
        assert rejection.reason and "\n" not in rejection.reason
        assert parse_mandrill(rejection.body).rejected == (rejection,)


@PROFILE
@given(st.lists(events, max_size=6), st.booleans())
def test_the_middleware_never_answers_5xx_and_runs_nothing_unless_200(
    items: list[Any], garbage: bool
) -> None:
    calls: list[str] = []

    def handler(bounce: Bounce) -> None:
        calls.append(bounce.key)

    app = TestApp(
        BounceMiddleware(
            downstream,
            routes={PATH: Mandrill(key=KEY, url=URL)},
            handlers=[handler],
            store=MemoryStore(),
        )
    )
    value = "\x00not json" if garbage else _value(items)
    headers, body = sign_request(value, key=KEY, url=URL)
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int in (200, 400)
    if response.status_int != 200:
        assert calls == []


# What a WSGI server can hand over as a header value: latin-1, no line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120)


@PROFILE
@given(header_text | st.none(), st.binary(max_size=200), st.sampled_from(["POST", "PUT", "GET"]))
def test_authenticate_raises_only_unauthorized_and_the_route_answers_401(
    signature: str | None, body: bytes, method: str
) -> None:
    provider = Mandrill(key=KEY, url=URL)
    headers = {} if signature is None else {"X-Mandrill-Signature": signature}
    request = post(PATH, body, headers, URL)
    try:
        provider.authenticate(WebhookRequest(method, PATH, request.headers, body, URL))
    except Unauthorized as exc:
        assert exc.reason and "\n" not in exc.reason
    app = TestApp(BounceMiddleware(downstream, routes={PATH: provider}))
    response = app.request(PATH, method="POST", headers=headers, body=body, expect_errors=True)
    assert response.status_int == 401
