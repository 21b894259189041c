"""``bounce-middleware sweep``: queue again the events a task queue has not finished.

For an application whose middleware hands events to Celery
(:class:`~bounce_middleware.celery_tasks.CeleryHandoff`): the same as the
``bounce_middleware.sweep`` beat task, run once from a shell or cron.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from bounce_middleware.errors import ConfigurationError, StoreUnavailable
from bounce_middleware.retention import parse_duration

from .common import EXIT_FAILED, EXIT_OK, CommandError
from .finder import load_middleware


def add_parser(commands: Any) -> None:
    """Add the ``sweep`` subcommand to ``commands`` (argparse's subparsers)."""
    sweeping = commands.add_parser(
        "sweep",
        help="queue again the events a task queue has left unfinished (Celery hand-off)",
        description="For an application whose BounceMiddleware hands events to Celery "
        "(handoff=CeleryHandoff(...)): send the key of every event left unfinished longer "
        "than --older-than to the workers again, oldest first, as the bounce_middleware.sweep "
        "beat task does. A message lost by the broker, or an event whose retries all failed, "
        "is delivered again; the store's lease keeps a running one from running twice.",
    )
    sweeping.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="the application (as replay --app): its middleware, store and Celery app",
    )
    sweeping.add_argument(
        "--older-than",
        metavar="AGE",
        help="e.g. 15m, 1h (default: the hand-off's sweep_older_than, 15 minutes)",
    )
    sweeping.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Queue the unfinished events again and say how many."""
    older_than: timedelta | None = None
    if args.older_than is not None:
        try:
            older_than = parse_duration(args.older_than)
        except ConfigurationError as exc:
            raise CommandError(f"--older-than: {exc}") from None
    middleware = load_middleware(args.app)
    handoff = middleware.receiver.handoff
    sweep = getattr(handoff, "sweep", None)
    if sweep is None:
        raise CommandError(
            f"--app {args.app}: the middleware hands no events to a task queue "
            "(no handoff=CeleryHandoff(...)): nothing to sweep; `replay` runs unfinished events"
        )
    try:
        queued = sweep(older_than)
    except StoreUnavailable as exc:
        raise CommandError(f"cannot read the store: {exc}") from None
    except Exception as exc:  # the broker refused: say so in one line, never a traceback
        print(f"could not queue the events: {type(exc).__name__}; is the broker up?")
        return EXIT_FAILED
    print(f"queued {queued} unfinished event(s) again")
    return EXIT_OK
