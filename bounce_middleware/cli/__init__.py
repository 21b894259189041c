"""The ``bounce-middleware`` command: test a deployment, inspect and replay stored bounces, demo.

::

    bounce-middleware send https://postmark:s3cret@example.com/postmark/bounce --email a@example.com
    bounce-middleware send https://example.com/hooks/mailgun --provider mailgun --secret KEY
    bounce-middleware send --provider sendgrid --test-route
    bounce-middleware list --store sqlite:///bounces.sqlite3 --kind hard
    bounce-middleware list --store sqlite:///bounces.sqlite3 --rejected
    bounce-middleware replay --store sqlite:///bounces.sqlite3 --app myproject.wsgi:application
    bounce-middleware prune --older-than 90d --store postgresql://bounces@db.internal/bounces
    bounce-middleware demo --port 8000

Exit status: 0 on success, 1 when the server answered non-2xx (or the answer
was not the middleware's) or a replay still fails, 2 for a usage error or when
the server or store cannot be reached. ``list``, ``replay`` and ``prune`` end
with the store's counts on stderr (``store: 12,345 events, 3 unfinished, 1
rejected unresolved``).

One module per command (``send``, ``records`` for ``list``, ``replay``, ``prune``,
``serve`` for ``demo``), with ``send``'s pieces beside it (``sample_requests``
per provider, ``route_setup`` for ``--test-route``, ``transport`` for the POST);
none imports sqlite3, WebOb or a signed provider's samples until its command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import prune, records, replay, send, serve, sweep
from .common import EXIT_USAGE, PROG, CommandError, package_version

__all__ = ["CommandError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bounce-middleware`` command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        status: int = args.run(args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Receive e-mail bounce webhooks in any WSGI or ASGI app: tools for "
        "checking a deployment, inspecting, replaying, sweeping and pruning recorded bounces, "
        "and a demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (send, records, replay, prune, sweep, serve):
        module.add_parser(commands)
    return parser
