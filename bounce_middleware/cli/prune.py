"""``bounce-middleware prune``: delete finished events older than a cut-off, in batches."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from bounce_middleware.errors import ConfigurationError, StoreUnavailable
from bounce_middleware.retention import (
    DEFAULT_BATCH_SIZE,
    SAFE_AGE,
    PrunableStore,
    parse_duration,
    prune_before,
)
from bounce_middleware.store import Store, aware

from .common import (
    EXIT_OK,
    CommandError,
    close_store,
    print_counts,
    store_counts,
    store_options,
    utc,
)
from .finder import chosen_store


def add_parser(commands: Any) -> None:
    """Add the ``prune`` subcommand to ``commands`` (argparse's subparsers)."""
    pruning = commands.add_parser(
        "prune",
        help="delete finished events older than a cut-off (never unfinished or rejected ones)",
        description="Delete the finished events (every handler completed them) received "
        "longer ago than --older-than, with their completions, in batches of --batch-size, "
        "each its own short transaction, so that the webhooks arriving meanwhile wait a "
        "moment at most. Unfinished events and rejected requests are never deleted. Prints "
        "how many were deleted, then, on stderr, the store's counts. A pruned event is "
        "forgotten: if its provider delivered it again, its handlers would run again, so "
        "keep events longer than any provider retries (a day or so; 3 days is warned under).",
    )
    pruning.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="how old a finished event must be to go: 90d, 12h, 30m, 2w, or 1d12h",
    )
    store_options(pruning, "prune")
    pruning.add_argument(
        "--batch-size",
        type=_batch_size,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"events deleted per transaction (default: {DEFAULT_BATCH_SIZE:,})",
    )
    pruning.add_argument(
        "--dry-run", action="store_true", help="say how many would be deleted; delete nothing"
    )
    pruning.set_defaults(run=run)


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Delete (or, with ``--dry-run``, count) the finished events older than the cut-off."""
    try:
        age = parse_duration(args.older_than)
    except ConfigurationError as exc:
        raise CommandError(f"--older-than: {exc}") from None
    before = datetime.now(UTC) - age
    # A dry run only counts: opened read-only, it never creates tables or upgrades a file.
    store = chosen_store(args.store, args.app, read_only=args.dry_run)
    try:
        if not isinstance(store, PrunableStore):
            raise CommandError(
                f"store {type(store).__name__} cannot prune: it has no prune(before, *, limit) "
                "method (see the README's 'A store of your own')"
            )
        if age < SAFE_AGE:
            print(
                f"warning: --older-than {args.older_than} is under {SAFE_AGE.days} days: a "
                "provider may still deliver such an event again, and a pruned event delivered "
                "again runs its handlers again",
                file=sys.stderr,
            )
        return _prune(store, args, before)
    finally:
        close_store(store)


def _prune(store: Store, args: argparse.Namespace, before: datetime) -> int:
    when = f"received before {utc(before)} (older than {args.older_than})"
    try:
        if args.dry_run:
            counts = store_counts(store, before=before)
            print(f"would delete {_events(counts.prunable)} {when}")
            print("dry run: nothing was deleted")
        else:
            deleted = prune_before(store, before, batch_size=args.batch_size)
            print(f"deleted {_events(deleted)} {when}, at most {args.batch_size:,} per transaction")
            counts = store_counts(store)
    except StoreUnavailable as exc:
        raise CommandError(f"cannot prune the store: {exc}") from None
    print_counts(counts)
    # aware(): a store of one's own may give a naive time back (UTC, as stores take it).
    if counts.oldest_unfinished is not None and aware(counts.oldest_unfinished) < before:
        print(
            "(unfinished events older than the cut-off are kept: `bounce-middleware replay` "
            "runs their handlers again, `bounce-middleware list --unfinished` shows them)",
            file=sys.stderr,
        )
    return EXIT_OK


def _events(count: int) -> str:
    return f"{count:,} finished event{'' if count == 1 else 's'}"
