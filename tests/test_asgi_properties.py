"""Property tests through the ASGI front, and both fronts answering alike.

The strategies are ``tests/test_properties.py``'s (authorization headers,
random and mutated bodies, Content-Length values); here the body also
arrives in random chunks, as an ASGI server hands it over. For every request:

- no exception escapes and no status is 5xx; a request not answered 200
  calls no handler;
- the WSGI and the ASGI middleware, configured alike, give the same status
  and the same answer.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bounce_middleware import Bounce, MemoryStore
from bounce_middleware.store import rejection_key
from tests.fronts import Client, make
from tests.test_properties import (
    ANSWERS,
    GOOD_AUTH,
    MAX_BODY,
    PASSWORD,
    PATH,
    PROFILE,
    USER,
    authorization,
    bodies,
    content_lengths,
    corrupted_payloads,
    mutated_payloads,
    wrong_credentials,
)


class Calls:
    """A handler counting its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, bounce: Bounce) -> None:
        self.count += 1


def _clients(front: str) -> dict[bool, tuple[Client, Calls]]:
    made = {}
    for stored in (False, True):
        calls = Calls()
        client = make(
            front,
            path=PATH,
            credentials=[f"{USER}:{PASSWORD}"],
            handlers=[calls],
            store=MemoryStore() if stored else None,
            max_body_size=MAX_BODY,
        )
        made[stored] = (client, calls)
    return made


ASGI = _clients("asgi")
WSGI = _clients("wsgi")

chunk_sizes = st.none() | st.integers(min_value=1, max_value=MAX_BODY + 300)


def _post(
    clients: dict[bool, tuple[Client, Calls]],
    stored: bool,
    auth: str | None,
    body: bytes,
    content_length: str | None,
    chunk_size: int | None = None,
) -> tuple[int, bytes]:
    client, calls = clients[stored]
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    before = calls.count
    reply = client.request(
        body=body, headers=headers, content_length=content_length, chunk_size=chunk_size
    )
    assert reply.status in ANSWERS, (reply.status, reply.text)
    if reply.status != 200:
        assert calls.count == before, "a rejected request called a handler"
    return reply.status, reply.body


@PROFILE
@given(
    stored=st.booleans(),
    auth=authorization,
    body=bodies,
    content_length=content_lengths,
    chunk_size=chunk_sizes,
)
def test_any_request_gets_a_4xx_or_200_and_rejections_call_no_handler(
    stored: bool, auth: str | None, body: bytes, content_length: str | None, chunk_size: Any
) -> None:
    _post(ASGI, stored, auth, body, content_length, chunk_size)


@PROFILE
@given(stored=st.booleans(), auth=wrong_credentials | st.none(), body=bodies)
def test_wrong_credentials_are_always_401(stored: bool, auth: str | None, body: bytes) -> None:
    assert _post(ASGI, stored, auth, body, None)[0] == 401


@PROFILE
@given(body=mutated_payloads() | corrupted_payloads(), chunk_size=chunk_sizes)
def test_mutated_real_payloads_are_accepted_or_refused_with_400(
    body: bytes, chunk_size: int | None
) -> None:
    assert _post(ASGI, True, GOOD_AUTH, body, None, chunk_size)[0] in {200, 400}


@PROFILE
@given(body=bodies, chunk_size=chunk_sizes)
def test_every_authenticated_refusal_is_kept_by_the_store(
    body: bytes, chunk_size: int | None
) -> None:
    status, _ = _post(ASGI, True, GOOD_AUTH, body, None, chunk_size)
    if status != 400:
        return
    store = ASGI[True][0].middleware.store
    key = rejection_key("postmark", body)
    kept = [r for r in store.records(rejected=True, limit=None) if r.key == key]
    assert len(kept) == 1 and kept[0].body == body


@PROFILE
@given(
    stored=st.booleans(),
    auth=authorization,
    body=bodies,
    content_length=content_lengths,
    chunk_size=chunk_sizes,
)
def test_both_fronts_answer_alike(
    stored: bool, auth: str | None, body: bytes, content_length: str | None, chunk_size: Any
) -> None:
    wsgi = _post(WSGI, stored, auth, body, content_length)
    asgi = _post(ASGI, stored, auth, body, content_length, chunk_size)
    assert asgi == wsgi
