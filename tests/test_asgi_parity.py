"""The same cases through both fronts: the status table, auth, methods, failures, redeliveries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bounce_middleware import Bounce, Handler, MemoryStore, StoreUnavailable
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.auth_cases import AUTH_CASES, AuthCase
from tests.fronts import FRONTS, PASSWORD, PATH, STATUS_TABLE, USER, Client, make

AUTH = {**auth_headers(USER, PASSWORD), "Content-Type": "application/json"}


class Recorder:
    """A handler that records the bounces it was given, failing while ``failing`` is set."""

    def __init__(self, *, failing: bool = False) -> None:
        self.seen: list[Bounce] = []
        self.failing = failing

    def __call__(self, bounce: Bounce) -> None:
        if self.failing:
            raise RuntimeError("the mail service is down")
        self.seen.append(bounce)


def client(front: str, *handlers: Any, **options: Any) -> Client:
    return make(
        front,
        path=PATH,
        credentials=["old:retired-password", f"{USER}:{PASSWORD}"],
        handlers=handlers,
        max_body_size=64 * 1024,
        **options,
    )


def bounce_body(**fields: Any) -> bytes:
    return json.dumps(postmark_bounce(**fields)).encode()


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize(
    ("body", "status", "reason"), [c[1:] for c in STATUS_TABLE], ids=[c[0] for c in STATUS_TABLE]
)
def test_status_table(front: str, body: bytes, status: int, reason: str) -> None:
    recorder = Recorder()
    reply = client(front, recorder).request(body=body, headers=AUTH)
    assert reply.status == status
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.text.count("\n") == 1 and reason in reply.text
    assert len(recorder.seen) == (1 if reason == "accepted" else 0)


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_a_body_in_chunks_is_read_whole(front: str, chunk_size: int) -> None:
    recorder = Recorder()
    body = bounce_body(email="chunks@example.com")
    reply = client(front, recorder).request(body=body, headers=AUTH, chunk_size=chunk_size)
    assert (reply.status, [b.email for b in recorder.seen]) == (200, ["chunks@example.com"])


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", AUTH_CASES, ids=str)
def test_shared_auth_suite(front: str, case: AuthCase) -> None:
    recorder = Recorder()
    header = case.header(USER, PASSWORD)
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Authorization"] = header
    reply = client(front, recorder).request(body=bounce_body(), headers=headers)
    assert reply.status == case.status
    if case.status == 401:
        assert reply.headers["www-authenticate"].startswith('Basic realm="bounce-middleware"')
        assert recorder.seen == []
    else:
        assert len(recorder.seen) == 1


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_methods_other_than_post(front: str, method: str) -> None:
    recorder = Recorder()
    reply = client(front, recorder).request(method, headers=AUTH)
    assert (reply.status, reply.headers["allow"], recorder.seen) == (405, "POST", [])
    # A HEAD answer has the headers, and no body.
    assert reply.body == (b"" if method == "HEAD" else b"only POST is allowed here\n")
    assert reply.headers["content-length"] == str(len(b"only POST is allowed here\n"))


@pytest.mark.parametrize("front", FRONTS)
def test_method_is_checked_after_auth(front: str) -> None:
    assert client(front).request("GET").status == 401


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("path", ["/", "/postmark", "/postmark/bounce/", "/x"])
def test_other_paths_reach_the_app(front: str, path: str) -> None:
    c = client(front)
    reply = c.request(path=path, body=bounce_body(), headers=AUTH)
    assert (reply.status, reply.body, c.downstream.paths) == (418, b"downstream", [path])


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize(
    ("length", "status"),
    [("abc", 400), ("-1", 400), ("1e3", 400), ("0" * 30, 200), ("9" * 19, 413), ("65537", 413)],
)
def test_content_length_is_checked_alike(front: str, length: str, status: int) -> None:
    # "000...0" is an empty body, refused by the parser... after authentication: 400 then.
    c = client(front)
    reply = c.request(body=b"", headers=AUTH, content_length=length)
    expected = 400 if length == "0" * 30 else status
    assert reply.status == expected, reply.text


@pytest.mark.parametrize("front", FRONTS)
def test_a_failed_handler_is_a_500_and_the_redelivery_runs_only_it(front: str) -> None:
    store = MemoryStore()
    first, flaky = Recorder(), Recorder(failing=True)
    c = client(front, Handler(first, "first"), Handler(flaky, "flaky"), store=store)
    body = bounce_body(email="flaky@example.com")
    assert c.request(body=body, headers=AUTH).status == 500
    flaky.failing = False
    assert c.request(body=body, headers=AUTH).status == 200
    assert c.request(body=body, headers=AUTH).text == "already processed\n"
    assert (len(first.seen), len(flaky.seen)) == (1, 1)


@pytest.mark.parametrize("front", FRONTS)
def test_a_duplicate_is_applied_once(front: str) -> None:
    recorder = Recorder()
    c = client(front, recorder, store=MemoryStore())
    body = bounce_body()
    replies = [c.request(body=body, headers=AUTH) for _ in range(3)]
    assert [r.text for r in replies] == ["accepted\n", "already processed\n", "already processed\n"]
    assert len(recorder.seen) == 1


class DownStore(MemoryStore):
    """A store whose database is gone."""

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Any:
        raise StoreUnavailable("database is locked")

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        raise StoreUnavailable("database is locked")


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("body", [bounce_body(), b"not json"], ids=["event", "refused-body"])
def test_a_store_that_is_down_is_a_503_with_retry_after(front: str, body: bytes) -> None:
    recorder = Recorder()
    reply = client(front, recorder, store=DownStore(), retry_after=7).request(
        body=body, headers=AUTH
    )
    assert (reply.status, reply.headers["retry-after"], recorder.seen) == (503, "7", [])


@pytest.mark.parametrize("front", FRONTS)
def test_both_fronts_give_providers_the_same_url(front: str) -> None:
    seen: list[str] = []

    class URLProvider:
        name = "url"
        methods = frozenset({"POST"})
        refuse_status = 400
        retry_status = None

        def authenticate(self, request: Any) -> None:
            seen.append(request.url)

        def parse(self, request: Any) -> Any:
            from bounce_middleware.providers import Parsed

            return Parsed(handshake="ok")

    c = make(front, routes={"/hooks/url": URLProvider()})
    c.request(path="/hooks/url?a=1&b=%20", headers={"Host": "hooks.example.com"})
    assert seen == ["http://hooks.example.com/hooks/url?a=1&b=%20"]


class BigBatches:
    """A provider that posts batches over the default limit (as Mandrill does)."""

    name = "big"
    methods = frozenset({"POST"})
    refuse_status = 400
    retry_status = None
    max_body_size = 2 * 1024 * 1024

    def authenticate(self, request: Any) -> None:
        pass

    def parse(self, request: Any) -> Any:
        from bounce_middleware.providers import Parsed

        return Parsed(handshake=f"{len(request.body)} bytes")


@pytest.mark.parametrize("front", FRONTS)
def test_a_provider_with_larger_batches_has_its_own_limit(front: str) -> None:
    body = b"x" * (1024 * 1024 + 10)
    own = make(front, routes={"/big": BigBatches(), PATH: client(front).middleware.routes[PATH]})
    assert own.request(path="/big", body=body).text == f"{len(body)} bytes\n"
    # Other routes keep the default; the provider's own limit still holds on its route.
    too_large = own.request(path=PATH, body=body, headers=AUTH)
    assert (too_large.status, too_large.text) == (413, "body is larger than 1048576 bytes\n")
    over = own.request(path="/big", body=b"x" * (2 * 1024 * 1024 + 1), chunk_size=65536)
    assert (over.status, over.text) == (413, "body is larger than 2097152 bytes\n")
    # max_body_size= caps every route.
    capped = make(front, routes={"/big": BigBatches()}, max_body_size=1000)
    assert capped.request(path="/big", body=body).status == 413


class ListHandoff:
    """A task queue that keeps the keys it was given."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def bind(self, receiver: Any) -> None:
        pass

    def enqueue(self, keys: Any) -> None:
        self.keys.extend(keys)


@pytest.mark.parametrize("front", FRONTS)
def test_a_handoff_records_and_queues_instead_of_running_the_handlers(front: str) -> None:
    recorder, queue, store = Recorder(), ListHandoff(), MemoryStore()
    c = client(front, recorder, store=store, handoff=queue)
    body = bounce_body()
    reply = c.request(body=body, headers=AUTH)
    assert (reply.status, reply.text) == (200, "accepted; queued for the handlers\n")
    assert recorder.seen == [] and queue.keys == [f"postmark:{json.loads(body)['ID']}"]
    [record] = store.records(limit=None)
    assert not record.finished
    # The worker's call: the handlers run now.
    from bounce_middleware.providers.postmark import parse_postmark

    assert c.middleware.deliver(parse_postmark(body).events[0]).status == 200
    assert len(recorder.seen) == 1
