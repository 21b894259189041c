"""Property tests: whatever arrives on the bounce path, the answer is never a 5xx.

Hypothesis generates Authorization headers, bodies (random bytes, random JSON,
real Postmark payloads with fields removed, replaced or corrupted byte by byte,
deep nesting) and Content-Length values, and posts them through WebTest (WSGI
lint on) to the middleware with and without a store. For every request:

- no exception escapes and no status is 5xx;
- a request that is not answered 200 calls no handler.

The example count is ``BOUNCE_HYPOTHESIS_EXAMPLES`` (default 40 per test, to
keep CI fast); raise it for a thorough run::

    BOUNCE_HYPOTHESIS_EXAMPLES=5000 pytest tests/test_properties.py
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp, TestRequest

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore
from bounce_middleware.providers.postmark import parse_postmark
from bounce_middleware.store import rejection_key
from bounce_middleware.testing import basic_auth_header, postmark_payload

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "s3cret"
GOOD_AUTH = basic_auth_header(USER, PASSWORD)
MAX_BODY = 4096
ANSWERS = {200, 400, 401, 413}

settings.register_profile(
    "bounce-properties",
    max_examples=int(os.environ.get("BOUNCE_HYPOTHESIS_EXAMPLES", "40")),
    # Example times vary with the machine; a deadline would only make CI flaky.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("bounce-properties")

RECORD_TYPES = [
    "Bounce",
    "Legacy",
    "SpamComplaint",
    "SubscriptionChange",
    "Delivery",
    "Open",
    "Click",
    "Inbound",
]


class Calls:
    """A handler counting its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, bounce: Bounce) -> None:
        self.count += 1


def _downstream(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


CALLS = Calls()
MIDDLEWARES = {
    stored: BounceMiddleware(
        _downstream,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[CALLS],
        store=MemoryStore() if stored else None,
        max_body_size=MAX_BODY,
    )
    for stored in (False, True)
}
LINTED = {stored: TestApp(app) for stored, app in MIDDLEWARES.items()}
# WSGI lint itself refuses a CONTENT_LENGTH that is not a number; servers may pass one on.
UNLINTED = {stored: TestApp(app, lint=False) for stored, app in MIDDLEWARES.items()}

# -- strategies --------------------------------------------------------------

# WSGI header values are latin-1 strings; a server never passes CR, LF or NUL on.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode("ascii")


wrong_credentials = st.one_of(
    st.binary(max_size=40).filter(lambda raw: raw != f"{USER}:{PASSWORD}".encode()).map(_basic),
    st.tuples(st.text(max_size=12), st.text(max_size=12))
    .filter(lambda up: up != (USER, PASSWORD))
    .map(lambda up: _basic(f"{up[0]}:{up[1]}".encode())),
    header_text.map(lambda text: "Basic " + text),
    header_text.filter(lambda text: not text.lower().lstrip().startswith("basic")),
    st.sampled_from(
        [
            "",
            "Basic",
            "Basic ",
            "Basic ====",
            "Bearer " + GOOD_AUTH[6:],
            GOOD_AUTH[:-2],
            GOOD_AUTH.replace("Basic ", "Basic\t\x00"),
            _basic(f"{USER}:{PASSWORD} ".encode()),
            _basic(f"{USER}{PASSWORD}".encode()),
            _basic("postmark:s3cr\u00e9t".encode("latin-1")),
        ]
    ),
)
authorization = st.one_of(st.just(GOOD_AUTH), st.none(), header_text, wrong_credentials)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    """A real Postmark payload with some fields removed, replaced or added."""
    payload = postmark_payload(draw(st.sampled_from(RECORD_TYPES)))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        key = draw(st.sampled_from(sorted(payload)) | st.text(max_size=12))
        if draw(st.booleans()):
            payload.pop(key, None)
        else:
            payload[key] = draw(json_values)
    if draw(st.booleans()):
        # Duplicates: the same event id as some earlier example.
        payload["ID"] = draw(st.integers(min_value=1, max_value=5))
    return json.dumps(payload).encode()


@st.composite
def corrupted_payloads(draw: st.DrawFn) -> bytes:
    """A real payload's bytes with a few bytes overwritten, inserted or deleted."""
    data = bytearray(json.dumps(postmark_payload(draw(st.sampled_from(RECORD_TYPES)))).encode())
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


deep_nesting = st.tuples(
    st.integers(min_value=1, max_value=3000), st.sampled_from([("[", "]"), ('{"a":', "}")])
).map(lambda nd: (nd[1][0] * nd[0] + "1" + nd[1][1] * nd[0]).encode())

bodies = st.one_of(
    st.binary(max_size=MAX_BODY + 200),
    json_values.map(lambda value: json.dumps(value).encode()),
    mutated_payloads(),
    corrupted_payloads(),
    deep_nesting,
    st.just(b"x" * (MAX_BODY + 1)),
)

content_lengths = st.one_of(
    st.none(),  # the true length
    st.just(""),  # no Content-Length at all
    st.integers(min_value=0, max_value=2**70).map(str),
    st.sampled_from(["-1", "abc", " 12", "12 ", "1e3", "0x10", "+5", "\uff11\uff12", "0" * 30]),
)


def _post(stored: bool, auth: str | None, body: bytes, content_length: str | None) -> int:
    """Post through WebTest; return the status, asserting nothing escaped and no 5xx."""
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    request = TestRequest.blank(PATH, method="POST", headers=headers, body=body)
    if content_length == "":
        del request.environ["CONTENT_LENGTH"]
    elif content_length is not None:
        request.environ["CONTENT_LENGTH"] = content_length
    apps = LINTED if request.environ.get("CONTENT_LENGTH", "0").isdigit() else UNLINTED
    before = CALLS.count
    response = apps[stored].do_request(request, status="*", expect_errors=True)
    assert response.status_int in ANSWERS, (response.status, response.text)
    if response.status_int != 200:
        assert CALLS.count == before, "a rejected request called a handler"
    return response.status_int


# -- properties --------------------------------------------------------------


@PROFILE
@given(stored=st.booleans(), auth=authorization, body=bodies, content_length=content_lengths)
def test_any_request_gets_a_4xx_or_200_and_rejections_call_no_handler(
    stored: bool, auth: str | None, body: bytes, content_length: str | None
) -> None:
    _post(stored, auth, body, content_length)


@PROFILE
@given(stored=st.booleans(), auth=wrong_credentials | st.none(), body=bodies)
def test_wrong_credentials_are_always_401(stored: bool, auth: str | None, body: bytes) -> None:
    assert _post(stored, auth, body, None) == 401


@PROFILE
@given(stored=st.booleans(), body=mutated_payloads() | corrupted_payloads())
def test_mutated_real_payloads_are_accepted_or_refused_with_400(stored: bool, body: bytes) -> None:
    assert _post(stored, GOOD_AUTH, body, None) in {200, 400}


@PROFILE
@given(body=bodies)
def test_every_authenticated_refusal_is_kept_by_the_store(body: bytes) -> None:
    status = _post(True, GOOD_AUTH, body, None)
    if status != 400:
        return
    store = MIDDLEWARES[True].store
    assert store is not None
    key = rejection_key("postmark", body)
    kept = [r for r in store.records(rejected=True, limit=None) if r.key == key]
    assert len(kept) == 1 and kept[0].body == body


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
)
timestamps = st.tuples(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.one_of(st.just(""), st.just("Z"), offsets),
).map(lambda parts: parts[0].isoformat() + parts[1])
edge_timestamps = st.tuples(
    st.sampled_from(["0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31"]),
    st.times(),
    offsets,
).map(lambda parts: f"{parts[0]}T{parts[1].isoformat()}{parts[2]}")


@PROFILE
@given(text=timestamps | edge_timestamps)
def test_every_bounced_at_given_to_handlers_converts_to_utc(text: str) -> None:
    [parsed] = parse_postmark(
        json.dumps(postmark_payload("Bounce", BouncedAt=text)).encode()
    ).events
    if parsed.bounced_at is not None:
        assert parsed.bounced_at.astimezone(UTC).tzinfo is UTC
    assert parsed.raw["BouncedAt"] == text
