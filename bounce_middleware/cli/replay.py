"""``bounce-middleware replay``: finish what failed; run rejected requests through today's parser.

Two kinds of stored work: events whose handlers did not all complete (Postmark
gave up retrying), and rejected requests (authenticated, refused with 400, kept
so that nothing authenticated is lost). Each goes through the application's own
:class:`~bounce_middleware.BounceMiddleware`, found by :func:`load_middleware`.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from typing import Any

from bounce_middleware.errors import PayloadError, StoreUnavailable, TemporaryFailure
from bounce_middleware.providers import Parsed, Provider
from bounce_middleware.reparse import NotReplayable, providers_named, stored_event
from bounce_middleware.request import post
from bounce_middleware.store import Record, Store

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    STORE_URLS,
    CommandError,
    close_store,
    open_existing_store,
    print_counts,
    printable,
    store_counts,
    store_option,
    utc,
)
from .finder import AnyMiddleware, load_middleware


def add_parser(commands: Any) -> None:
    """Add the ``replay`` subcommand to ``commands`` (argparse's subparsers)."""
    replay = commands.add_parser(
        "replay",
        help="re-run what did not complete: failed handlers, and rejected requests",
        description="For every unfinished event in the store, parse its stored body again "
        "and run, through the application's BounceMiddleware, the handlers that have not "
        "completed it. For every unresolved rejected request (authenticated but refused "
        "with 400), parse its body with today's parser: an event is then dispatched like "
        "any other and the request marked resolved; one still refused stays, with the "
        "reason printed. --app names module:attribute (imported with the current "
        "directory on sys.path): the BounceMiddleware itself, a WSGI app wrapping it "
        "(found through the wrapped apps' .app, .wsgi_app or .application attributes, "
        "which covers Flask apps and ordinary middleware stacks), or a function taking no "
        "arguments that returns either (an application factory); for the demo, "
        "bounce_middleware.demo:make_app. When there was anything to replay, the store's "
        "counts follow on stderr: events, unfinished events, rejected requests unresolved. "
        "Exit status 1 when anything still fails.",
    )
    replay.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="e.g. myproject.wsgi:application, or bounce_middleware.demo:make_app",
    )
    store_option(
        replay,
        f"the store's URL: {STORE_URLS} (default: $BOUNCE_STORE, else the middleware's own store)",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would run, and parse rejected requests again, but run and change nothing",
    )
    replay.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Replay unfinished events, then unresolved rejected requests, oldest first."""
    middleware = load_middleware(args.app)
    # The receiver's store, not the one given: under ASGI an async store's methods are
    # coroutine functions, and only the receiver's bridge runs them from this code.
    own = middleware.receiver.store
    if args.store:
        # A copy, so the application object keeps its own store.
        middleware = copy.copy(middleware)
        middleware.receiver = copy.copy(middleware.receiver)
        middleware.store = open_existing_store(args.store)
    elif own is None:
        raise CommandError("the middleware has no store: pass --store")
    store = middleware.receiver.store
    assert store is not None
    try:
        return _replay(middleware, store, dry_run=args.dry_run)
    finally:
        # This process made the application only to replay: close what it opened, so
        # that a SQLite file is left without its -wal and -shm files.
        for opened in {id(store): store, id(own): own}.values():
            close_store(opened)


def _replay(middleware: AnyMiddleware, store: Store, *, dry_run: bool) -> int:
    try:
        events = list(store.records(unfinished=True, limit=None))
        rejected = list(unresolved_rejections(store))
    except StoreUnavailable as exc:
        raise CommandError(f"cannot read the store: {exc}") from None
    if not events and not rejected:
        print("nothing to replay: every recorded bounce is finished")
        return EXIT_OK
    # Both lists were read first: an event that a rejected request turns into is
    # not replayed a second time in the same run.
    failed = 0
    for record in reversed(events):
        ok, line = replay_event(middleware, record, dry_run=dry_run)
        failed += not ok
        print(line)
    stuck = 0
    for record in reversed(rejected):
        ok, line = replay_rejected(middleware, store, record, dry_run=dry_run)
        stuck += not ok
        print(line)
    if dry_run:
        if events:
            print(
                f"would replay {len(events)} event(s): {len(events) - failed} ready, "
                f"{failed} would be skipped"
            )
        if rejected:
            print(
                f"would replay {len(rejected)} rejected request(s): "
                f"{len(rejected) - stuck} parse now, {stuck} still refused"
            )
        print("dry run: no handler was run and the store was not changed")
    else:
        if events:
            print(f"replayed {len(events)} event(s): {len(events) - failed} ok, {failed} failed")
        if rejected:
            print(
                f"replayed {len(rejected)} rejected request(s): {len(rejected) - stuck} "
                f"resolved, {stuck} still rejected"
            )
    # What is left, where an operator looks: stdout stays the replay's own lines.
    print_counts(store_counts(store))
    return EXIT_FAILED if failed or stuck else EXIT_OK


def unresolved_rejections(store: Store) -> Sequence[Record]:
    """The rejected requests not yet resolved; none for a store that keeps none."""
    try:
        return store.records(rejected=True, unfinished=True, limit=None)
    except TypeError:  # a store written before the protocol had rejected records
        return ()


def _parse(provider: Provider, body: bytes) -> Parsed:
    # Replays are not re-authenticated: the store kept only what was authenticated.
    return provider.parse(post(body=body))


def replay_event(middleware: AnyMiddleware, record: Record, *, dry_run: bool) -> tuple[bool, str]:
    """Replay one stored event; return whether it is (or would be) finished, and a line."""
    label = f"{printable(record.key)} {printable(record.type)} {printable(record.email)}"
    try:
        event = stored_event(middleware.routes, record)
    except NotReplayable as exc:
        return False, f"{label}: skipped, {exc.reason}"
    pending = [
        h.name for h in middleware.handlers if h.wants(event) and h.name not in record.completed
    ]
    names = ", ".join(pending) or "no handler"
    if dry_run:
        return True, f"{label}: would run {names}"
    # Now, in this process, even when the application hands events to a task queue.
    answer = middleware.deliver(event)
    return answer.status == 200, f"{label}: ran {names} -> {answer.status} {answer.reason}"


def _routes_of(middleware: AnyMiddleware, name: str) -> list[Provider]:
    """Every configured provider named ``name`` (two SES routes for two accounts...)."""
    return providers_named(middleware.routes, name)


def _no_route(middleware: AnyMiddleware, record: Record) -> str:
    configured = ", ".join(sorted(middleware.providers))
    return (
        f"its provider {printable(record.provider)!r} has no route in this application "
        f"(configured: {configured})"
    )


def replay_rejected(
    middleware: AnyMiddleware, store: Store, record: Record, *, dry_run: bool
) -> tuple[bool, str]:
    """Run one rejected request through today's parser and, if it parses, the middleware.

    Returns whether it is (or would be) resolved, and a line to print. It is
    resolved once the store recorded the events it holds (or once it is
    acknowledged): a handler failing then leaves an ordinary unfinished event,
    which the next ``replay`` runs again.
    """
    label = f"{printable(record.key)} (rejected {utc(record.received_at)})"
    providers = _routes_of(middleware, record.provider)
    if not providers:
        return False, f"{label}: skipped, {_no_route(middleware, record)}"
    parsed = None
    refusal = ""
    for provider in providers:  # several routes of one provider: the first that accepts it
        try:
            parsed = _parse(provider, record.body)
            break
        except (PayloadError, TemporaryFailure) as exc:
            refusal = refusal or exc.reason
    if parsed is None:
        return False, f"{label}: still refused: {printable(refusal)}"
    if parsed.rejected:
        return False, f"{label}: still refused: {printable(parsed.rejected[0].reason)}"
    if not parsed.events:
        names = ", ".join(printable(n) for n in parsed.acknowledged) or "handshake"
        what = f"now acknowledged as {names}, not dispatched"
        if dry_run:
            return True, f"{label}: would be {what}, and resolved"
        return _resolve(store, record, f"{label}: {what}")
    event = ", ".join(
        f"{printable(e.key)} {printable(e.type)} {printable(e.email)}" for e in parsed.events
    )
    wanted = {h.name: None for e in parsed.events for h in middleware.handlers if h.wants(e)}
    names = ", ".join(wanted) or "no handler"
    if dry_run:
        return True, f"{label}: parses now as {event}: would run {names}, and be resolved"
    answer = middleware.dispatch(parsed.events)
    line = f"{label}: parses now as {event}: ran {names} -> {answer.status} {answer.reason}"
    if answer.status == 200:
        return _resolve(store, record, line)
    if answer.status == 500:
        # Recorded and claimed: from now on an unfinished event like any other.
        resolved, line = _resolve(store, record, line)
        return False, line + ("; `replay` runs the failed handlers again" if resolved else "")
    return False, line + "; left unresolved"


def _resolve(store: Store, record: Record, line: str) -> tuple[bool, str]:
    try:
        store.resolve(record.key)
    except StoreUnavailable as exc:
        return False, f"{line}; could not be marked resolved: {exc}"
    return True, f"{line}; resolved"
