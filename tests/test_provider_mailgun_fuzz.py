"""Property tests for Mailgun: no input makes the provider raise an undocumented exception,
and no request makes the middleware answer 5xx.

Bodies: random bytes, random JSON, real-shaped events (the samples) with fields
removed or replaced by random JSON at any depth, signed or not, byte-corrupted
signed bodies, and form posts. ``BOUNCE_HYPOTHESIS_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp, TestRequest, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore
from bounce_middleware.errors import PayloadError, Unauthorized
from bounce_middleware.providers.mailgun import Mailgun
from bounce_middleware.request import post
from bounce_middleware.samples.mailgun import MAILGUN_KINDS, mailgun_event, sign_request
from bounce_middleware.store import rejection_key

KEY = "fuzzing-signing-key"
PATH = "/hooks/mailgun"

PROFILE = settings(
    max_examples=int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
# Where Mailgun puts things: a mutation lands at the top of event-data or one level down.
PLACES = [(), ("message",), ("message", "headers"), ("delivery-status",), ("user-variables",)]


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    """A sample event with some fields removed or replaced, at any of PLACES."""
    # Fixed id, time and message id: a strategy must draw the same way for the same choices.
    data = mailgun_event(draw(st.sampled_from(sorted(MAILGUN_KINDS))), id="Fz", timestamp=1.5e9)
    data["message"]["headers"]["message-id"] = "fuzz@mg.example.com"
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        target: Any = data
        for name in draw(st.sampled_from(PLACES)):
            target = target.get(name) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        names = st.text(max_size=12)
        name = draw(st.sampled_from(sorted(target)) | names if target else names)
        if draw(st.booleans()):
            target.pop(name, None)
        else:
            target[name] = draw(json_values)
    return data if draw(st.integers(0, 9)) else draw(json_values)


@st.composite
def signed(draw: st.DrawFn) -> bytes:
    """A mutated event, signed now with a drawn token (a repeated one is a replay)."""
    token = f"{draw(st.integers(min_value=0, max_value=2**64)):050x}"
    return sign_request(draw(mutated_events()), signing_key=KEY, token=token)[1]


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A signed body with a few bytes overwritten, inserted or deleted."""
    data = bytearray(draw(signed()))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif len(data) > 1:
            del data[at]
    return bytes(data)


@st.composite
def signature_blocks(draw: st.DrawFn) -> bytes:
    """A body whose signature block holds random JSON values."""
    block = draw(
        st.dictionaries(
            st.sampled_from(["timestamp", "token", "signature", "parent-signature"]), json_values
        )
        | json_values
    )
    return json.dumps({"signature": block, "event-data": {"event": "failed"}}).encode()


form_bodies = st.dictionaries(
    st.sampled_from(["timestamp", "token", "signature", "event"]) | st.text(max_size=8),
    st.text(max_size=60),
).map(lambda fields: urlencode(fields).encode())

bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda value: json.dumps(value).encode()),
    signed(),
    corrupted(),
    signature_blocks(),
    form_bodies,
)
content_types = st.sampled_from(
    [
        "application/json",
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        'multipart/form-data; boundary="b"',
        "multipart/form-data",
        "Multipart/Form-Data;boundary=",
    ]
)


def check_bounce(bounce: Bounce) -> None:
    """What a handler may rely on, whatever the body held."""
    assert bounce.provider == "mailgun" and isinstance(bounce.email, str)
    assert bounce.bounced_at is None or bounce.bounced_at.utcoffset() is not None
    assert all(isinstance(tag, str) for tag in bounce.tags)
    assert all(isinstance(v, str) for v in bounce.metadata.values())
    assert len(bounce.key) < 300


@PROFILE
@given(body=bodies, content_type=content_types)
def test_authenticate_then_parse_raise_only_the_documented_errors(
    body: bytes, content_type: str
) -> None:
    mailgun = Mailgun(signing_key=KEY)
    request = post(PATH, body, {"Content-Type": content_type})
    try:
        mailgun.authenticate(request)
    except Unauthorized as exc:
        assert "\n" not in exc.reason
        return
    finally:
        mailgun.answered(request, 200)
    try:
        parsed = mailgun.parse(request)
    except PayloadError as exc:
        assert "\n" not in exc.reason
        return
    for bounce in parsed.events:
        check_bounce(bounce)


@PROFILE
@given(body=bodies, content_type=content_types)
def test_parse_alone_raises_only_payload_errors(body: bytes, content_type: str) -> None:
    # `replay` parses stored bodies with no authentication first.
    try:
        parsed = Mailgun(signing_key=KEY).parse(post(PATH, body, {"Content-Type": content_type}))
    except PayloadError:
        return
    for bounce in parsed.events:
        check_bounce(bounce)


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, bounce: Bounce) -> None:
        self.count += 1


def downstream(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


CALLS = Calls()
STORE = MemoryStore()
APP = TestApp(
    BounceMiddleware(
        downstream,
        routes={PATH: Mailgun(signing_key=KEY)},
        handlers=[CALLS],
        store=STORE,
    )
)


def send(body: bytes, headers: dict[str, str]) -> TestResponse:
    request = TestRequest.blank(PATH, method="POST", headers=headers, body=body)
    return APP.do_request(request, status="*", expect_errors=True)


@PROFILE
@given(body=bodies, content_type=content_types)
def test_the_middleware_never_answers_5xx_and_keeps_every_refusal(
    body: bytes, content_type: str
) -> None:
    before = CALLS.count
    response = send(body, {"Content-Type": content_type})
    assert response.status_int in {200, 401, 406}, (response.status, response.text)
    if response.status_int != 200:
        assert CALLS.count == before, "a refused request called a handler"
    if response.status_int == 406:
        key = rejection_key("mailgun", body)
        assert [r.body for r in STORE.records(rejected=True, limit=None) if r.key == key] == [body]


@PROFILE
@given(event_data=mutated_events())
def test_a_signed_event_is_accepted_or_refused_with_406_never_401(event_data: Any) -> None:
    headers, body = sign_request(event_data, signing_key=KEY, timestamp=int(time.time()))
    response = send(body, headers)
    assert response.status_int in {200, 406}, (response.status, response.text)
