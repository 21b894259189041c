"""The ASGI front's threads: the synchronous core in a worker, ``async def`` code on the loop.

The receiver, the delivery and the stores are synchronous, and one copy of
them serves both fronts. The ASGI front runs them in a worker thread of its
own (:class:`WorkerThreads`), so the event loop never waits on a store or a
handler. An ``async def`` handler, or an async store's ``async def`` methods,
are called from that thread like any other: the call is handed back to the
request's event loop and the worker waits for its result. The delivery
around them (claim, handlers in order, completions, release) is the same
code, with the same guarantees, as under WSGI.

Outside a request (``bounce-middleware replay``, a test calling
``dispatch``), there is no loop to hand the call to: it runs in a loop of
its own (``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeVar

from .handlers import Handler, HandlerFunc, TransactionalHandlerFunc, default_name, make_handler
from .model import BounceKind
from .store import Store

T = TypeVar("T")

#: How a worker thread of the current request calls a coroutine function on its loop.
_Portal = Callable[..., Any]
_PORTAL: ContextVar[_Portal | None] = ContextVar("bounce_middleware_asgi_portal", default=None)


def is_async(func: object) -> bool:
    """True for an ``async def`` function, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - any callable object, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


#: Worker threads of one ASGI middleware unless ``max_threads=`` says otherwise: the size
#: of asyncio's default executor, so the capacity the front had there is unchanged.
DEFAULT_MAX_THREADS = min(32, (os.cpu_count() or 1) + 4)


class WorkerThreads:
    """The ASGI front's own threads: ``run(func, arg)`` calls ``func(arg)`` in one of them.

    Its ``async def`` callees run on the calling loop meanwhile. Never the
    loop's default executor: a worker waits there for an ``async def``
    handler, and a handler that needs the default executor itself
    (``loop.getaddrinfo``, ``asyncio.to_thread``, an HTTP client connecting)
    would wait for a thread its own delivery holds; as many webhooks at once
    as that executor has threads, and none would ever be answered. Under
    asyncio, a ``ThreadPoolExecutor`` of ``max_threads`` (``run_in_executor``
    is the standard library, and half the cost per call of anyio's threads on
    this project's machine: see benchmarks/asgi.py). Under another event loop
    (trio), anyio's threads, limited by a ``CapacityLimiter`` of its own.
    """

    __slots__ = ("max_threads", "_executor", "_pid", "_limiter")

    def __init__(self, max_threads: int) -> None:
        #: How many deliveries run at once; the others wait for a thread.
        self.max_threads = max_threads
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._limiter: Any = None

    async def run(self, func: Callable[[Any], T], arg: Any) -> T:
        """``func(arg)`` in a worker thread, with this context (and the loop's portal)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return await self._run_in_anyio_thread(func, arg)
        token = _PORTAL.set(partial(_on_loop, loop))
        context = contextvars.copy_context()
        _PORTAL.reset(token)
        return await loop.run_in_executor(self._pool(), context.run, func, arg)

    def _pool(self) -> ThreadPoolExecutor:
        # A pool whose threads ran before a fork (a preloading server) has none in the
        # child, yet may count them as idle: each process starts its own.
        pid = os.getpid()
        if self._executor is None or self._pid != pid:
            self._executor = ThreadPoolExecutor(self.max_threads, "bounce-middleware")
            self._pid = pid
        return self._executor

    async def _run_in_anyio_thread(self, func: Callable[[Any], T], arg: Any) -> T:
        import anyio
        import anyio.from_thread
        import anyio.to_thread

        if self._limiter is None:
            # Made on the loop: older anyio versions need one to make a limiter.
            self._limiter = anyio.CapacityLimiter(self.max_threads)
        token = _PORTAL.set(anyio.from_thread.run)
        try:
            return await anyio.to_thread.run_sync(func, arg, limiter=self._limiter)
        finally:
            _PORTAL.reset(token)


def _on_loop(loop: asyncio.AbstractEventLoop, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    return asyncio.run_coroutine_threadsafe(_awaited(func, *args), loop).result()


async def _awaited(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await func(*args)


def call_async(func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``await func(*args, **kwargs)`` from synchronous code and return its result.

    In a worker of a request, on that request's loop; with no loop at all, in
    a loop of its own. Raises ``RuntimeError`` on an event loop's own thread,
    where waiting would block the loop that must run it.
    """
    if kwargs:
        func = partial(func, **kwargs)
    portal = _PORTAL.get()
    if portal is not None:
        return portal(func, *args)  # type: ignore[no-any-return]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(func, *args))
    raise RuntimeError(
        "an async handler or store was called from synchronous code running on the event "
        "loop; the ASGI BounceMiddleware calls them from its worker threads"
    )


class AsyncHandler:
    """An ``async def`` handler made callable from the delivery's worker thread."""

    __slots__ = ("func", "transactional")

    def __init__(self, func: Callable[..., Awaitable[object]]) -> None:
        self.func = func
        # Read by make_handler: a transactional coroutine is called with the Delivery too.
        self.transactional = getattr(func, "transactional", False) is True

    def __call__(self, *args: Any) -> object:
        return call_async(self.func, *args)


def bridged_handler(
    func: HandlerFunc | TransactionalHandlerFunc | Handler,
    *,
    kinds: Iterable[BounceKind | str] | None = None,
    name: str | None = None,
) -> Handler:
    """A :class:`Handler` for ``func``; an ``async def`` one is wrapped in :class:`AsyncHandler`.

    The name is the coroutine function's own (``module.qualname``), as the
    store records completions by name.
    """
    if isinstance(func, Handler):
        if not is_async(func.func):
            return make_handler(func, kinds=kinds, name=name)
        kinds = func.kinds if kinds is None else kinds
        name = name or func.name
        func = func.func
    if not is_async(func):
        return make_handler(func, kinds=kinds, name=name)
    return make_handler(AsyncHandler(func), kinds=kinds, name=name or default_name(func))  # type: ignore[arg-type]


class AsyncStoreBridge:
    """A store some of whose methods are ``async def``, called like a synchronous one.

    Every other attribute is the store's own. The delivery calls it from its
    worker thread; each coroutine method runs on the request's loop.
    """

    def __init__(self, store: object) -> None:
        #: The store as given.
        self.wrapped = store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.wrapped, name)
        if is_async(attribute):
            return partial(call_async, attribute)
        return attribute

    def __repr__(self) -> str:
        return f"AsyncStoreBridge({self.wrapped!r})"


def bridged_store(store: Store | Any | None) -> Store | None:
    """``store``, or an :class:`AsyncStoreBridge` around it when a method is ``async def``."""
    if store is None or isinstance(store, AsyncStoreBridge):
        return store
    from .store import STORE_METHODS

    if any(is_async(getattr(store, name, None)) for name in STORE_METHODS):
        return AsyncStoreBridge(store)
    return store


def given_store(store: Store | None) -> Any:
    """The store as the application gave it (the async one behind a bridge)."""
    return store.wrapped if isinstance(store, AsyncStoreBridge) else store
