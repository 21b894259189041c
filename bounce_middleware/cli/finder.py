"""Find the application's BounceMiddleware from ``--app module:attr``, or say exactly why not."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from typing import TYPE_CHECKING, TypeAlias

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.middleware import BounceMiddleware
from bounce_middleware.settings import resolve
from bounce_middleware.store import Store

from .common import CommandError, open_existing_store, printable

if TYPE_CHECKING:
    from bounce_middleware import asgi

#: Either front: they share the receiver and everything ``replay``, ``list`` and ``prune`` use.
AnyMiddleware: TypeAlias = "BounceMiddleware | asgi.BounceMiddleware"

# Attributes under which wrappers keep the app they wrap: BounceMiddleware and most
# middleware (WSGI and ASGI, Starlette's included) use `app`, Flask keeps its (wrapped)
# WSGI callable in `wsgi_app`, whitenoise uses `application`, Starlette and FastAPI their
# middleware stack in `middleware_stack`.
WRAPPED_ATTRS = ("app", "wsgi_app", "application", "middleware_stack")
_WHAT_TO_NAME = (
    "name the BounceMiddleware (WSGI or ASGI), an app wrapping it (found through .app, "
    ".wsgi_app, .application or a Starlette/FastAPI middleware stack), or a function of no "
    "arguments returning either"
)


def load_middleware(spec: str) -> AnyMiddleware:
    """Import ``module:attr`` and find the BounceMiddleware in it (see ``replay --help``).

    Every failure is a :class:`CommandError` naming what is wrong: the import,
    an object with no middleware in it, a function that needs arguments, or the
    error a factory raised.
    """
    # Console scripts do not put the current directory on sys.path; gunicorn and flask do.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = resolve(spec)
    except ConfigurationError as exc:
        raise CommandError(f"--app {spec}: {exc}") from None
    except Exception as exc:  # resolve's TypeError, or whatever the module raised on import
        raise CommandError(f"--app {spec}: {describe(exc)}") from None
    found = find_middleware(target)
    if found is not None:
        return found
    name = getattr(target, "__qualname__", None) or type(target).__name__
    if not callable(target) or isinstance(target, type):
        raise CommandError(
            f"--app {spec}: no BounceMiddleware in this {type(target).__name__}; {_WHAT_TO_NAME}"
        )
    needed = required_parameters(target)
    if needed:
        raise CommandError(
            f"--app {spec}: no BounceMiddleware in {name}, and it is not an application "
            f"factory: it needs arguments ({', '.join(needed)}); {_WHAT_TO_NAME}"
        )
    try:
        made = target()
    except Exception as exc:  # the application's own start-up failed: say how
        raise CommandError(f"--app {spec}: calling {name}() failed: {describe(exc)}") from None
    found = find_middleware(made)
    if found is None:
        raise CommandError(
            f"--app {spec}: {name}() returned a {type(made).__name__} with no "
            f"BounceMiddleware in it; {_WHAT_TO_NAME}"
        )
    return found


def chosen_store(store: str | None, app: str | None, *, read_only: bool = False) -> Store:
    """The store ``--store URL`` names (it wins), else that of ``--app``'s middleware."""
    if store or not app:
        return open_existing_store(store, read_only=read_only)
    # The store the receiver calls: under ASGI, an async store's bridge (each coroutine
    # method run to its end here); under WSGI, the store itself.
    found = load_middleware(app).receiver.store
    if found is None:
        raise CommandError(f"--app {app}: the middleware has no store; pass --store")
    return found


def find_middleware(app: object) -> AnyMiddleware | None:
    """The BounceMiddleware that is ``app`` or that ``app`` wraps, following wrapped apps."""
    fronts: tuple[type, ...] = (BounceMiddleware,)
    if "bounce_middleware.asgi" in sys.modules:  # an ASGI application imported it already
        fronts += (sys.modules["bounce_middleware.asgi"].BounceMiddleware,)
    seen: set[int] = set()
    queue = [app]
    while queue and len(seen) < 64:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, fronts):
            return current  # type: ignore[return-value]
        _build_starlette_stack(current)
        for attr in WRAPPED_ATTRS:
            try:
                inner = getattr(current, attr, None)
            except Exception:  # a proxy object may raise anything from __getattr__
                continue
            if inner is not None:
                queue.append(inner)
    return None


def _build_starlette_stack(app: object) -> None:
    # Starlette (and FastAPI) build their middleware, ours included, on the first request:
    # build it now, as that first request would.
    build = getattr(app, "build_middleware_stack", None)
    if callable(build) and getattr(app, "middleware_stack", False) is None:
        with contextlib.suppress(Exception):  # not Starlette's after all: nothing to follow
            app.middleware_stack = build()  # type: ignore[attr-defined]


def required_parameters(target: object) -> list[str] | None:
    """The parameters a call must pass to ``target`` ([] for a factory); None if unknowable."""
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]


def describe(exc: BaseException) -> str:
    """``TypeError: first line of the message``, without control characters."""
    first = printable((str(exc).strip().splitlines() or [""])[0][:300])
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
