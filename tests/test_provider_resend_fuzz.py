"""Property tests for Resend: no input makes the provider raise an undocumented exception,
no request makes the middleware answer 5xx, and every stored body replays to its event.

Bodies: random bytes, random JSON, real-shaped events (the samples) with fields
removed or replaced by random JSON at any depth, replay envelopes, and
byte-corrupted signed bodies; headers: random svix-* / webhook-* values.
``BOUNCE_HYPOTHESIS_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp, TestRequest, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore
from bounce_middleware.errors import PayloadError, Unauthorized
from bounce_middleware.providers.resend import Resend
from bounce_middleware.request import post
from bounce_middleware.samples.resend import SAMPLE_KINDS, resend_event, sign_request
from bounce_middleware.store import rejection_key
from tests.test_provider_resend import SECRET

PATH = "/hooks/resend"

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
# Where Resend puts things: a mutation lands at the top, in data, or one level further.
PLACES = [(), ("data",), ("data", "bounce"), ("data", "tags"), ("data", "failed")]


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    """A sample event with some fields removed or replaced, at any of PLACES."""
    # Fixed ids and times: a strategy must draw the same way for the same choices.
    data = resend_event(
        draw(st.sampled_from(SAMPLE_KINDS)),
        created_at="2024-11-22T23:41:12.126Z",
        email_id="56761188-7520-42d8-8898-ff6fc54ce618",
    )
    data["data"]["created_at"] = "2024-11-22T23:41:11.894719+00:00"
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


# Header values travel as latin-1 in WSGI: ids drawn from it.
ids = st.text(st.characters(max_codepoint=255), max_size=30) | st.sampled_from(
    ["msg_fuzz", "", " ", "m" * 300]
)
envelopes = st.builds(
    lambda msg_id, event: json.dumps({"svix-id": msg_id, "event": event}).encode(),
    ids | json_values,
    mutated_events(),
)


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A sample body with a few bytes overwritten, inserted or deleted."""
    data = bytearray(json.dumps(draw(mutated_events())).encode())
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


bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda value: json.dumps(value).encode()),
    mutated_events().map(lambda value: json.dumps(value).encode()),
    envelopes,
    corrupted(),
)
header_values = st.none() | st.text(max_size=40) | st.sampled_from(["v1,AAAA", "1700000000"])
headers = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ["svix-id", "svix-timestamp", "svix-signature"]
        + ["webhook-id", "webhook-timestamp", "webhook-signature"],
        header_values,
    ),
).map(lambda found: {k: v for k, v in found.items() if v is not None})


def check_bounce(bounce: Bounce) -> None:
    """What a handler may rely on, whatever the body held; and the stored body replays."""
    assert bounce.provider == "resend" and isinstance(bounce.email, str)
    assert bounce.bounced_at is None or bounce.bounced_at.utcoffset() is not None
    assert all(isinstance(tag, str) for tag in bounce.tags)
    assert all(isinstance(v, str) for v in bounce.metadata.values())
    assert "\n" not in bounce.description
    assert len(bounce.key) < 300
    [again] = Resend(secret=SECRET).parse(post(PATH, bounce.body)).events
    assert again.key == bounce.key and again.kind == bounce.kind


@PROFILE
@given(body=bodies, sent=headers)
def test_check_headers_authenticate_then_parse_raise_only_the_documented_errors(
    body: bytes, sent: dict[str, str]
) -> None:
    resend = Resend(secret=SECRET)
    request = post(PATH, body, sent)
    try:
        resend.check_headers(request)
    except Unauthorized as exc:
        assert "\n" not in exc.reason
    try:
        resend.authenticate(request)
    except Unauthorized as exc:
        assert "\n" not in exc.reason
    try:
        parsed = resend.parse(request)
    except PayloadError as exc:
        assert "\n" not in exc.reason
        return
    for bounce in parsed.events:
        check_bounce(bounce)


@PROFILE
@given(body=bodies)
def test_parse_alone_raises_only_payload_errors_and_what_it_keeps_replays(body: bytes) -> None:
    # `replay` parses stored bodies with no headers and no authentication.
    try:
        parsed = Resend(secret=SECRET).parse(post(PATH, body))
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
        downstream, routes={PATH: Resend(secret=SECRET)}, handlers=[CALLS], store=STORE
    )
)


def send(body: bytes, sent: dict[str, str]) -> TestResponse:
    request = TestRequest.blank(PATH, method="POST", headers=sent, body=body)
    return APP.do_request(request, status="*", expect_errors=True)


@PROFILE
@given(body=bodies, msg_id=st.sampled_from(["msg_fuzz_1", "msg_fuzz_2"]) | ids)
def test_the_middleware_never_answers_5xx_and_keeps_every_refusal(body: bytes, msg_id: str) -> None:
    before = CALLS.count
    # Signed under a printable id, then sent under the drawn one: an id the header check
    # refuses is answered 401; a retried id runs nothing new.
    signed_id = msg_id if msg_id.isascii() and msg_id.isprintable() else "msg_fuzz"
    sent, _ = sign_request(body, secret=SECRET, msg_id=signed_id, timestamp=int(time.time()))
    sent["svix-id"] = msg_id
    response = send(body, sent)
    assert response.status_int in {200, 400, 401}, (response.status, response.text)
    if response.status_int != 200:
        assert CALLS.count == before, "a refused request called a handler"
    if response.status_int == 400:
        # Kept with its svix-id where the body can carry it (Resend.kept_body), else as is.
        kept = Resend(secret=SECRET).kept_body(post(PATH, body, sent))
        key = rejection_key("resend", kept)
        assert [r.body for r in STORE.records(rejected=True, limit=None) if r.key == key] == [kept]


@PROFILE
@given(event=mutated_events())
def test_a_signed_event_is_accepted_or_refused_with_400_never_401(event: Any) -> None:
    sent, body = sign_request(event, secret=SECRET, timestamp=int(time.time()))
    response = send(body, sent)
    assert response.status_int in {200, 400}, (response.status, response.text)
