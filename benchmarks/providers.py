"""One bounce per request for each provider: the middleware against django-anymail.

Run from the repository root::

    pip install -e ".[bench]" && python -m benchmarks.providers

For Postmark, SendGrid, Mailgun, Amazon SES, Mailjet, SparkPost, Brevo,
Resend and Mandrill: the middleware's route (the real provider, correctly
signed requests, a no-op handler, no store) against Django's trivial view and
against django-anymail's tracking view for the same provider and the same
kind of body (a no-op ``tracking`` receiver), in one process, rows
interleaved. The issues' target (12 and 13): the middleware at most 0.5x
django-anymail for every provider. Every row is checked before it is timed
(refused forgeries, one event received per request) and after each batch.
``--quick`` runs a short version (figures only indicative).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
LIMIT = 0.50  #: issues 12 and 13: the middleware at most half of django-anymail, every provider


def main(argv: Sequence[str] | None = None) -> int:
    """Set up Django, check and time every row, print the ratios with PASS/MISS."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.providers", description=__doc__)
    parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats (21)")
    parser.add_argument(
        "--seconds", type=float, default=0.15, help="time per row per repeat (0.15)"
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats of 0.05 s: a smoke run")
    parser.add_argument(
        "--only", default="", help="comma-separated row keys to time (default: all rows)"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "providers.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds = 3, 0.05
    # Provider rows touch no database: the project's settings, another URLconf.
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.django_project.provider_settings"
    import django

    django.setup()
    return run(args)


def run(args: argparse.Namespace) -> int:
    """The measurements (Django set up)."""
    from .harness import calibrate, run_interleaved
    from .provider_rows import build_rows
    from .report import Ratio, environment, judge, print_rows, rows_json, save

    say = print
    env = environment()
    say(
        f"bounce-middleware provider benchmark: Python {env['python']}, Django {env['django']}, "
        f"{env['cpus']} CPUs, load average {env['load_average']:.2f}"
    )
    # The checks send forgeries on purpose; their warnings are expected, not news.
    logging.getLogger("bounce_middleware").addHandler(logging.NullHandler())
    logging.getLogger("bounce_middleware").propagate = False
    logging.getLogger("django.security").setLevel(logging.CRITICAL)
    logging.getLogger("django.request").setLevel(logging.CRITICAL)
    rows, cases = build_rows()
    if args.only:
        wanted = set(args.only.split(","))
        rows = [row for row in rows if row.key in wanted]
    for row in rows:
        row.check()
    say(f"checked {len(rows)} rows: forgeries refused, one event received per bounce")
    batches = {row.key: calibrate(row, args.seconds) for row in rows}
    started = time.monotonic()
    run_interleaved(rows, args.repeats, batches, progress=lambda text: say("  " + text))
    elapsed = time.monotonic() - started
    by_key = {row.key: row for row in rows}

    say("")
    say(
        f"per-request time, median of {args.repeats} interleaved repeats (min - max), "
        f"{elapsed:.0f} s, load average {os.getloadavg()[0]:.2f} after"
    )
    say("(the Django rows run in a project as startproject makes it, unless MIDDLEWARE = [])")
    print_rows(rows, batches, say, width=72)
    say("")
    say("ratios (median of the per-repeat ratios, min - max):")
    ratios = []
    for case in cases:
        short = case.short
        ratios += [
            Ratio(f"{case.esp_name}: middleware / django-anymail", short, f"{short}-any", LIMIT),
            Ratio(
                f"{case.esp_name}: middleware / django-anymail with MIDDLEWARE = []",
                short,
                f"{short}-any0",
            ),
            Ratio(f"{case.esp_name}: middleware / Django trivial view", short, "3a"),
            Ratio(f"{case.esp_name}: django-anymail / Django trivial view", f"{short}-any", "3a"),
        ]
    results = judge(ratios, by_key, say)
    say("")
    say("notes:")
    say("  Amazon SES: django-anymail does not verify SNS signatures (Basic auth only);")
    say("    the middleware verifies each one (RSA, certificate cached) and the topic.")
    say("  Mailgun: django-anymail checks the HMAC, not the timestamp's age nor replays.")
    say("  SendGrid: django-anymail loads the public key and warns that it no longer")
    say("    supports SendGrid on every request (its view is built per request).")
    say("  Mailjet, SparkPost, Brevo: HTTP Basic on both sides (nothing else exists).")
    say("  Resend: both check the Svix signature and its 5-minute window; anymail")
    say("    with the svix package. The middleware's key is the svix-id.")
    say("  Mandrill: both check the HMAC over the configured URL and the form;")
    say("    neither can check a timestamp (Mandrill sends none).")
    verdicts = [r["verdict"] for r in results if r["verdict"]]
    say(
        f"targets: {verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS "
        f"(middleware <= {LIMIT:.2f} x django-anymail)"
    )
    result: dict[str, Any] = {
        **env,
        "repeats": args.repeats,
        "seconds_per_batch": args.seconds,
        "rows": rows_json(rows, batches),
        "ratios": results,
    }
    save(args.json, result, say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
