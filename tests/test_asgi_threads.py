"""The ASGI front's threads: sync work in a worker, async handlers and stores on the loop."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from bounce_middleware import Bounce, ConfigurationError, MemoryStore
from bounce_middleware.asgi_bridge import DEFAULT_MAX_THREADS
from tests.fronts import PATH, http_scope
from tests.test_asgi_front import AUTH, Exchange, bounce_body, chunk, middleware

#: Seconds after which a wait that should end at once is a hang: never a measure of speed.
HANG = 60


def test_sync_work_runs_in_a_worker_and_async_handlers_on_the_loop() -> None:
    threads: dict[str, int] = {}

    def sync_handler(bounce: Bounce) -> None:
        threads["sync"] = threading.get_ident()

    async def async_handler(bounce: Bounce) -> None:
        await asyncio.sleep(0)
        threads["async"] = threading.get_ident()

    app, _ = middleware(sync_handler, async_handler, store=MemoryStore())

    async def main() -> None:
        threads["loop"] = threading.get_ident()
        exchange = Exchange(chunk(bounce_body()))
        await app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send)
        assert exchange.status == 200

    asyncio.run(main())
    assert threads["async"] == threads["loop"] != threads["sync"]
    assert [h.name for h in app.handlers] == [
        "tests.test_asgi_threads.test_sync_work_runs_in_a_worker_and_async_handlers_on_the_loop"
        ".<locals>.sync_handler",
        "tests.test_asgi_threads.test_sync_work_runs_in_a_worker_and_async_handlers_on_the_loop"
        ".<locals>.async_handler",
    ]


def test_a_waiting_handler_does_not_block_the_loop() -> None:
    # The handler waits for an event that only a coroutine on the loop sets: were the
    # handler on the loop, that coroutine could never run (HANG only ends such a hang).
    released = threading.Event()
    ran_in: dict[str, int] = {}

    async def main() -> int:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def waiting(bounce: Bounce) -> None:
            ran_in["handler"] = threading.get_ident()
            loop.call_soon_threadsafe(started.set)
            if not released.wait(HANG):
                raise AssertionError("no coroutine ran on the loop while the handler waited")

        async def releaser() -> None:
            await started.wait()
            ran_in["releaser"] = threading.get_ident()
            released.set()

        app, _ = middleware(waiting)
        task = asyncio.create_task(releaser())
        exchange = Exchange(chunk(bounce_body()))
        await app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send)
        await task
        return exchange.status

    assert asyncio.run(main()) == 200
    assert released.is_set() and ran_in["handler"] != ran_in["releaser"]


def test_a_failing_async_handler_is_a_500_and_its_redelivery_runs_it_alone() -> None:
    calls: list[str] = []
    failing = [True]

    async def first(bounce: Bounce) -> None:
        calls.append("first")

    async def flaky(bounce: Bounce) -> None:
        calls.append("flaky")
        if failing[0]:
            raise RuntimeError("down")

    app, _ = middleware(first, flaky, store=MemoryStore())
    body = bounce_body()
    assert Exchange(chunk(body)).run(app, http_scope("POST", PATH, AUTH)).status == 500
    failing[0] = False
    assert Exchange(chunk(body)).run(app, http_scope("POST", PATH, AUTH)).status == 200
    assert calls == ["first", "flaky", "flaky"]


class AsyncStore:
    """A store whose every method is ``async def`` (over a MemoryStore), noting its threads."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.threads: set[int] = set()

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return getattr(self.inner, name)(*args, **kwargs)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("claim", *args, **kwargs)

    async def claim_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("claim_many", *args, **kwargs)

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("complete", *args, **kwargs)

    async def release(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("release", *args, **kwargs)

    async def settle_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("settle_many", *args, **kwargs)

    async def records(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("records", *args, **kwargs)

    async def reject(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("reject", *args, **kwargs)

    async def resolve(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("resolve", *args, **kwargs)


def test_an_async_store_is_awaited_on_the_loop_with_the_same_promises() -> None:
    calls: list[str] = []
    store = AsyncStore()
    app, _ = middleware(lambda bounce: calls.append(bounce.key), store=store)
    assert app.store is cast(object, store)
    body = bounce_body()

    async def main() -> list[bytes]:
        texts = []
        for _ in range(2):
            exchange = Exchange(chunk(body))
            await app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send)
            texts.append(exchange.sent[1]["body"])
        assert store.threads == {threading.get_ident()}
        return texts

    assert asyncio.run(main()) == [b"accepted\n", b"already processed\n"]
    assert len(calls) == 1
    # A refused body is kept through the async store's reject(), as any store keeps it.
    refused = Exchange(chunk(b"not json")).run(app, http_scope("POST", PATH, AUTH))
    assert refused.status == 400
    [kept] = store.inner.records(rejected=True, limit=None)
    assert kept.body == b"not json"


def test_dispatch_outside_a_request_runs_async_handlers_in_a_loop_of_their_own() -> None:
    # What bounce-middleware replay does: a synchronous call, no server loop.
    from bounce_middleware.providers.postmark import parse_postmark

    seen: list[str] = []

    async def handler(bounce: Bounce) -> None:
        seen.append(bounce.email)

    app, _ = middleware(handler)
    [event] = parse_postmark(bounce_body(email="replay@example.com")).events
    assert app.dispatch(event).status == 200
    assert seen == ["replay@example.com"]

    async def on_the_loop() -> int:
        return app.dispatch(event).status  # would block the loop it needs: refused

    assert asyncio.run(on_the_loop()) == 500


def test_a_transactional_async_handler_is_given_the_delivery() -> None:
    deliveries: list[Any] = []

    async def handler(bounce: Bounce, delivery: Any) -> bool:
        deliveries.append(delivery)
        return False

    handler.transactional = True  # type: ignore[attr-defined]
    app, _ = middleware(handler, store=MemoryStore())
    assert Exchange(chunk(bounce_body())).run(app, http_scope("POST", PATH, AUTH)).status == 200
    assert deliveries[0].finishes is True and app.handlers[0].transactional


def test_add_handler_takes_async_handlers_with_kinds_and_names() -> None:
    seen: list[str] = []
    app, _ = middleware()

    async def complaints(bounce: Bounce) -> None:
        seen.append(bounce.kind.value)

    handler = app.add_handler(complaints, kinds=["complaint"], name="complaints")
    assert (handler.name, handler.kinds is not None) == ("complaints", True)
    with pytest.raises(ConfigurationError):
        app.add_handler(complaints, name="complaints")
    assert Exchange(chunk(bounce_body())).run(app, http_scope("POST", PATH, AUTH)).status == 200
    assert seen == []


def test_under_trio_anyio_threads_run_the_work_and_its_async_handlers() -> None:
    import trio

    threads: dict[str, int] = {}

    async def handler(bounce: Bounce) -> None:
        await trio.sleep(0)
        threads["handler"] = threading.get_ident()

    def sync_handler(bounce: Bounce) -> None:
        threads["sync"] = threading.get_ident()

    app, _ = middleware(handler, sync_handler, store=MemoryStore())
    exchange = Exchange(chunk(bounce_body()))

    async def main() -> None:
        threads["loop"] = threading.get_ident()
        await app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send)

    trio.run(main)
    assert exchange.status == 200
    assert threads["handler"] == threads["loop"] != threads["sync"]


def test_without_threads_the_work_runs_on_the_loop() -> None:
    threads: dict[str, int] = {}

    def handler(bounce: Bounce) -> None:
        threads["handler"] = threading.get_ident()

    app, _ = middleware(handler, threads=False)

    async def main() -> int:
        threads["loop"] = threading.get_ident()
        exchange = Exchange(chunk(bounce_body()))
        await app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send)
        return exchange.status

    assert asyncio.run(main()) == 200
    assert threads["handler"] == threads["loop"]


def test_without_threads_async_handlers_and_stores_are_refused_when_built() -> None:
    async def handler(bounce: Bounce) -> None:
        pass

    with pytest.raises(ConfigurationError, match="async def: it needs threads=True"):
        middleware(handler, threads=False)
    with pytest.raises(ConfigurationError, match="an async store needs threads=True"):
        middleware(store=AsyncStore(), threads=False)
    app, _ = middleware(threads=False)
    with pytest.raises(ConfigurationError, match="needs threads=True"):
        app.add_handler(handler)
    with pytest.raises(ConfigurationError, match="needs threads=True"):
        app.store = AsyncStore()  # type: ignore[assignment]
    assert app.handlers == [] and app.store is None


def test_a_handler_object_around_an_async_function_keeps_its_name_and_kinds() -> None:
    from bounce_middleware import Handler
    from bounce_middleware.model import BounceKind

    seen: list[str] = []

    async def on_hard(bounce: Bounce) -> None:
        seen.append(bounce.email)

    given = Handler(on_hard, "my.hard", frozenset({BounceKind.HARD}))
    app, _ = middleware(given)
    [handler] = app.handlers
    assert (handler.name, handler.kinds) == ("my.hard", frozenset({BounceKind.HARD}))
    body = bounce_body(email="hard@example.com")
    assert Exchange(chunk(body)).run(app, http_scope("POST", PATH, AUTH)).status == 200
    soft = bounce_body(email="soft@example.com", Type="SoftBounce", TypeCode=4001)
    assert Exchange(chunk(soft)).run(app, http_scope("POST", PATH, AUTH)).status == 200
    assert seen == ["hard@example.com"]


def test_an_async_handler_using_the_default_executor_answers_while_it_is_saturated() -> None:
    # As many concurrent webhooks as the loop's default executor has threads, each with
    # an async handler that needs that executor (getaddrinfo, to_thread, httpx connecting):
    # the deliveries' workers must not be the threads the handlers wait for.
    def lookup() -> str:
        return "resolved"

    answers: list[str] = []

    async def handler(bounce: Bounce) -> None:
        answers.append(await asyncio.get_running_loop().run_in_executor(None, lookup))

    app, _ = middleware(handler, store=MemoryStore())
    size = 2

    async def main() -> list[int]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(size))
        exchanges = [Exchange(chunk(bounce_body(ID=n))) for n in range(size)]
        calls = (app(http_scope("POST", PATH, AUTH), e.receive, e.send) for e in exchanges)
        # Only turns a deadlock into a failure: the work takes milliseconds.
        await asyncio.wait_for(asyncio.gather(*calls), HANG)
        return [e.status for e in exchanges]

    assert asyncio.run(main()) == [200] * size
    assert answers == ["resolved"] * size


def test_the_deliveries_run_in_the_middlewares_own_threads_max_threads_at_once() -> None:
    # One thread: three concurrent webhooks take turns in it, each with its request's context.
    request_id: contextvars.ContextVar[int] = contextvars.ContextVar("request_id")
    seen: list[tuple[int, str, int]] = []

    def handler(bounce: Bounce) -> None:
        thread = threading.current_thread()
        seen.append((thread.ident or 0, thread.name, request_id.get()))

    app, _ = middleware(handler, max_threads=1)
    assert app.workers is not None and app.workers.max_threads == 1

    async def post(n: int) -> int:
        request_id.set(n)  # as an outer middleware would, per request (each task its own)
        exchange = Exchange(chunk(bounce_body(ID=n)))
        await app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send)
        return exchange.status

    async def main() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(post(n) for n in range(3))), HANG)

    assert asyncio.run(main()) == [200] * 3
    assert len({ident for ident, _, _ in seen}) == 1
    assert all(name.startswith("bounce-middleware") for _, name, _ in seen)
    assert sorted(n for _, _, n in seen) == [0, 1, 2]
    default, _ = middleware()
    assert default.workers is not None and default.workers.max_threads == DEFAULT_MAX_THREADS


def test_under_trio_max_threads_limits_anyio_threads() -> None:
    import anyio.from_thread
    import trio
    import trio.testing

    steps: list[str] = []

    def handler(bounce: Bounce) -> None:
        steps.append("start")
        # Every other request runs until it blocks: into this handler too, if it may.
        anyio.from_thread.run(trio.testing.wait_all_tasks_blocked)
        steps.append("end")

    app, _ = middleware(handler, max_threads=1)

    async def post(n: int) -> None:
        exchange = Exchange(chunk(bounce_body(ID=n)))
        await app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send)
        assert exchange.status == 200

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(post, n)

    trio.run(main)
    trio.run(main)  # a second run of the same application is limited alike
    assert steps == ["start", "end"] * 6


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True])
def test_max_threads_must_be_a_positive_whole_number(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_threads must be a whole number"):
        middleware(max_threads=bad)


def test_max_threads_without_threads_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="threads=False has none"):
        middleware(max_threads=4, threads=False)
    app, _ = middleware(threads=False)
    assert app.workers is None


def test_a_forked_process_starts_worker_threads_of_its_own() -> None:
    # A preloading server forks after the application (here: its pool) has served: the
    # child has none of the parent's threads, though the pool counted one as idle.
    app, _ = middleware(lambda bounce: None)

    def post(n: int) -> int:
        async def main() -> int:
            exchange = Exchange(chunk(bounce_body(ID=n)))
            await asyncio.wait_for(
                app(http_scope("POST", PATH, AUTH), exchange.receive, exchange.send), HANG
            )
            return exchange.status

        return asyncio.run(main())

    assert post(1) == 200
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:
            status = 0 if post(2) == 200 else 2
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0


def test_without_threads_a_store_that_waits_is_refused_when_built(tmp_path: Any) -> None:
    from bounce_middleware import SQLiteStore

    store = SQLiteStore(tmp_path / "b.sqlite3")
    try:
        with pytest.raises(ConfigurationError, match=r"SQLiteStore .* use threads=True"):
            middleware(store=store, threads=False)
        app, _ = middleware(threads=False)
        with pytest.raises(ConfigurationError, match=r"SQLiteStore .* use threads=True"):
            app.store = store
        assert app.store is None
    finally:
        store.close()

    class OwnStore:
        """A synchronous store of one's own: it may wait on anything."""

        def __init__(self) -> None:
            self.inner = MemoryStore()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    with pytest.raises(ConfigurationError, match=r"store OwnStore .* use threads=True"):
        middleware(store=OwnStore(), threads=False)
    # A MemoryStore (or a subclass) never waits: accepted, as is no store.
    app, _ = middleware(store=MemoryStore(), threads=False)
    assert isinstance(app.store, MemoryStore)
