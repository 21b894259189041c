"""``bounce-middleware list``: the recorded bounces, or the rejected requests, newest first."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import BounceKind
from bounce_middleware.retention import StoreCounts
from bounce_middleware.store import Record, Store, aware

from .common import (
    EXIT_OK,
    CommandError,
    close_store,
    non_negative_int,
    print_counts,
    printable,
    sqlite_path,
    store_counts,
    store_options,
    utc,
)
from .finder import chosen_store


def add_parser(commands: Any) -> None:
    """Add the ``list`` subcommand to ``commands`` (argparse's subparsers)."""
    listing = commands.add_parser(
        "list",
        help="show recorded bounces (or, with --rejected, refused requests), newest first",
        description="Show the bounces recorded in a store, newest first. With --rejected, "
        "show instead the authenticated requests that were refused (400) and kept, so "
        "that `replay` can run them again after an upgrade. Then, on stderr, the store's "
        "counts: events, unfinished events (and since when), rejected requests unresolved.",
    )
    store_options(listing, "list")
    listing.add_argument(
        "--kind",
        choices=[kind.value for kind in BounceKind],
        metavar="KIND",
        help=f"only this kind: {', '.join(kind.value for kind in BounceKind)}",
    )
    listing.add_argument("--email", metavar="ADDRESS", help="only this address (case-insensitive)")
    listing.add_argument(
        "--unfinished",
        action="store_true",
        help="only events with handlers not yet completed (with --rejected: not yet resolved)",
    )
    listing.add_argument(
        "--rejected",
        action="store_true",
        help="the rejected requests instead: key, provider, time, reason, resolved or not",
    )
    listing.add_argument(
        "--limit",
        type=non_negative_int,
        default=100,
        metavar="N",
        help="show at most N events (default: 100; 0 shows all)",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array instead")
    listing.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the recorded bounces (or rejected records), newest first."""
    if args.rejected and (args.kind or args.email):
        raise CommandError("--kind and --email select bounces; a rejected record has neither")
    tidy = _Tidy(args.store)
    store = chosen_store(args.store, args.app, read_only=True)
    try:
        counts = store_counts(store)
        status = show_rejected(store, args) if args.rejected else show_events(store, args, counts)
        print_counts(counts)
        return status
    except StoreUnavailable as exc:
        raise CommandError(f"cannot read the store: {exc}") from None
    finally:
        close_store(store)
        tidy()


def show_events(store: Store, args: argparse.Namespace, counts: StoreCounts) -> int:
    """The ``list`` table (or JSON) of accepted events."""
    limit = args.limit or None
    kind = BounceKind(args.kind) if args.kind else None
    # One more than asked, to tell whether the listing was cut.
    records = list(
        store.records(
            kind=kind,
            email=args.email,
            unfinished=args.unfinished,
            limit=None if limit is None else limit + 1,
        )
    )
    cut = limit is not None and len(records) > limit
    records = records[:limit]
    if args.json:
        print(json.dumps([record_json(r) for r in records], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not records:
        filtered = args.kind or args.email or args.unfinished
        print("no recorded bounces match" if filtered else "no recorded bounces yet")
    else:
        print_table(
            ["RECEIVED", "KIND", "TYPE", "EMAIL", "STATE", "TRIES", "KEY", "COMPLETED HANDLERS"],
            [
                [
                    utc(r.received_at),
                    r.kind.value,
                    r.type,
                    r.email,
                    "done" if r.finished else "pending",
                    str(r.attempts),
                    r.key,
                    ", ".join(sorted(r.completed)) or "-",
                ]
                for r in records
            ],
        )
        if cut:
            print(f"(the newest {limit} shown; --limit 0 shows all)")
    # Nothing authenticated is dropped: say so where people look first.
    waiting = counts.rejected_unresolved
    if waiting:
        print(
            f"({waiting} rejected request(s) not yet replayed: "
            "bounce-middleware list --rejected shows them)"
        )
    return EXIT_OK


def show_rejected(store: Store, args: argparse.Namespace) -> int:
    """The ``list --rejected`` table (or JSON) and the counts."""
    every = rejected_records(store, unresolved=False)
    unresolved = sum(not r.finished for r in every)
    shown = [r for r in every if not (args.unfinished and r.finished)]
    limit = args.limit or None
    cut = limit is not None and len(shown) > limit
    shown = shown[:limit]
    if args.json:
        print(json.dumps([rejected_json(r) for r in shown], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not every:
        print("no rejected requests: every authenticated request was accepted")
        return EXIT_OK
    if shown:
        print_table(
            ["RECEIVED", "PROVIDER", "STATE", "KEY", "REASON"],
            [
                [
                    utc(r.received_at),
                    r.provider,
                    "resolved" if r.finished else "unresolved",
                    r.key,
                    r.reason,
                ]
                for r in shown
            ],
        )
    if cut:
        print(f"(the newest {limit} shown; --limit 0 shows all)")
    print(
        f"{len(every)} rejected request(s): {unresolved} unresolved, "
        f"{len(every) - unresolved} resolved"
        + ("; `bounce-middleware replay` runs the unresolved ones again" if unresolved else "")
    )
    return EXIT_OK


def rejected_records(store: Store, *, unresolved: bool) -> Sequence[Record]:
    """Every rejected record, newest first (only the unresolved ones if ``unresolved``)."""
    try:
        return store.records(rejected=True, unfinished=unresolved, limit=None)
    except TypeError:
        # A store written against the protocol before rejected records existed.
        raise CommandError(
            f"{type(store).__name__} does not keep rejected requests "
            "(its records() takes no rejected=...)"
        ) from None


def record_json(record: Record) -> dict[str, Any]:
    """An event as JSON-ready data (without its body)."""
    return {
        "key": record.key,
        "provider": record.provider,
        "received_at": aware(record.received_at).isoformat(),
        "kind": record.kind.value,
        "type": record.type,
        "email": record.email,
        "finished": record.finished,
        "attempts": record.attempts,
        "completed": sorted(record.completed),
    }


def rejected_json(record: Record) -> dict[str, Any]:
    """A rejected record as JSON-ready data (the body's size, never the body)."""
    return {
        "key": record.key,
        "provider": record.provider,
        "received_at": aware(record.received_at).isoformat(),
        "reason": record.reason,
        "resolved": record.finished,
        "body_bytes": len(record.body),
    }


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print left-aligned columns, two spaces apart."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


class _Tidy:
    """Remove the ``-wal``/``-shm`` files a read-only listing of a SQLite store created.

    A read-only connection to a WAL database creates them and cannot delete them
    (issue 10: they stayed behind as untracked files). When they were absent before
    the listing, one read-write connection opened and closed removes them again; it
    writes nothing, and SQLite deletes them only if no other connection (a running
    server) still uses the file.
    """

    def __init__(self, url: str | None) -> None:
        self.path = sqlite_path(url) if url and url.startswith("sqlite:///") else None
        self.had_wal = self.path is not None and any(
            self.path.with_name(self.path.name + suffix).exists() for suffix in ("-wal", "-shm")
        )

    def __call__(self) -> None:
        if self.path is None or self.had_wal or not self.path.is_file():
            return
        import sqlite3

        try:
            connection = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=rw", uri=True)
            try:
                connection.execute("PRAGMA schema_version").fetchone()
            finally:
                connection.close()
        except sqlite3.Error:
            pass  # a file we may not write: the files stay, as they would have anyway
