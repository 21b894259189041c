"""What every command shares: exit statuses, the one-line error, store opening, formatting."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bounce_middleware.errors import ConfigurationError, StoreUnavailable
from bounce_middleware.retention import StoreCounts, counts_of
from bounce_middleware.store import Store, aware, open_store
from bounce_middleware.text import loggable

PROG = "bounce-middleware"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STORE_ENV = "BOUNCE_STORE"


class CommandError(Exception):
    """A usage or environment problem, printed as one line; exit status 2."""


def open_existing_store(url: str | None, *, read_only: bool = False) -> Store:
    """Open the store at ``url``, refusing to create a new SQLite file by mistake;
    ``read_only``: create, upgrade and write nothing (SQLite and PostgreSQL alike)."""
    if not url:
        raise CommandError(
            "no store: pass --store sqlite:///path/to/bounces.sqlite3 (or "
            "postgresql://user@host/dbname), or --app MODULE:ATTR for the store of your "
            "application's middleware"
        )
    if url.split(":", 1)[0].lower() == "memory":
        raise CommandError(
            "--store memory:// would be a new, empty store in this process: name a "
            "sqlite:/// or postgresql:// store, or the application's own with --app MODULE:ATTR"
        )
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if path.name and not path.is_file():
            raise CommandError(
                f"no store file at {str(path)!r} (sqlite:///relative/path, "
                "sqlite:////absolute/path)"
            )
    try:
        return open_store(url, read_only=read_only)
    except (ConfigurationError, StoreUnavailable) as exc:
        raise CommandError(str(exc)) from None


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///`` store URL (without its ``?options``)."""
    return Path(url[len("sqlite:///") :].partition("?")[0])


def close_store(store: object) -> None:
    """Close a store that has a ``close`` method (the shipped ones do; the protocol has none)."""
    close = getattr(store, "close", None)
    if callable(close):
        close()


def store_option(parser: argparse.ArgumentParser, help: str) -> None:
    """The ``--store URL`` option, defaulting to ``$BOUNCE_STORE``."""
    parser.add_argument("--store", default=os.environ.get(STORE_ENV), metavar="URL", help=help)


#: What ``--store`` takes, in every command's help.
STORE_URLS = "sqlite:///bounces.sqlite3 or postgresql://user@host/dbname"


def store_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--store URL`` and ``--app MODULE:ATTR``, as ``list`` and ``prune`` take them."""
    store_option(parser, f"the store's URL: {STORE_URLS} (default: $BOUNCE_STORE)")
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help=f"{verb} the store of this application's BounceMiddleware (e.g. the Django or "
        "SQLAlchemy store), found as `replay --app` finds it; --store (or $BOUNCE_STORE) wins",
    )


def store_counts(store: Store, *, before: datetime | None = None) -> StoreCounts:
    """The store's counts (:func:`~bounce_middleware.retention.counts_of`)."""
    try:
        return counts_of(store, before=before)
    except StoreUnavailable as exc:
        raise CommandError(f"cannot read the store: {exc}") from None


def print_counts(counts: StoreCounts) -> None:
    """``store: 12,345 events, 3 unfinished, 1 rejected unresolved``, on stderr: stdout is
    the command's output, which scripts read (``list --json``)."""
    print(f"store: {counts.summary()}", file=sys.stderr)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def printable(text: str) -> str:
    """``text`` with control characters escaped: stored values come from webhook bodies."""
    return loggable(text, limit=None)


def utc(moment: datetime) -> str:
    """``2026-01-02 03:04:05Z``."""
    return aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def package_version() -> str:
    """The installed version of bounce-middleware, or ``unknown``."""
    try:
        return version("bounce-middleware")
    except PackageNotFoundError:
        return "unknown"
