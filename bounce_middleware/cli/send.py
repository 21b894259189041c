"""``bounce-middleware send URL``: post a realistic, correctly authenticated webhook to a route.

Postmark's sample goes with HTTP Basic credentials, as Postmark's "Send test"
button sends it; every other provider's is signed as that provider signs
(:mod:`.sample_requests`). The answer is printed, with one line of advice when
it is not the middleware's or when the route refused the request.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bounce_middleware.demo_routes import DEMO_PATHS
from bounce_middleware.providers import PROVIDERS
from bounce_middleware.samples import POSTMARK_TYPES, RECORD_TYPES

from .common import EXIT_FAILED, EXIT_OK, CommandError, printable
from .route_setup import route_setup
from .sample_requests import (
    DEFAULT_EMAIL,
    SAMPLE_PROVIDERS,
    WITH_ID,
    Sample,
    SampleProvider,
    postmark_sample,
    sample_provider,
    signed_sample,
    unauthorized_advice,
)
from .transport import Reply, Target, parse_target, post

__all__ = ["Reply", "Target", "add_parser", "advice", "parse_target", "post", "run"]

SECRET_ENV = "BOUNCE_SECRET"


def add_parser(commands: Any) -> None:
    """Add the ``send`` subcommand to ``commands`` (argparse's subparsers)."""
    names = ", ".join(PROVIDERS)
    send = commands.add_parser(
        "send",
        help="post a realistic, correctly signed webhook of any provider to a URL, like "
        "Postmark's 'Send test' button",
        description="Post a realistic webhook of --provider to URL, authenticated as that "
        "provider does it, and print the answer. Postmark: HTTP Basic credentials from "
        "--user/--password, else from the URL (https://user:password@host/path, as "
        "configured in Postmark), else from the BOUNCE_USER and BOUNCE_PASSWORD environment "
        "variables. Mailjet: HTTP Basic credentials from --user/--password or the URL. "
        "SparkPost and Brevo: HTTP Basic credentials, or the route's bearer token as --secret "
        "or BOUNCE_SECRET. Mailgun, Resend and Mandrill: signed with the route's signing key "
        "(Resend's whsec_ secret, Mandrill's webhook key), --secret or BOUNCE_SECRET; "
        "Mandrill's signature covers the URL, which --signed-url overrides. "
        "SendGrid and Amazon SES: signed with published TEST keys, which only a test route "
        "accepts (--test-route prints its configuration); --user/--password or the URL add "
        "HTTP Basic credentials for a route that also checks them. Exit status 0 for a 2xx "
        "answer from bounce-middleware, 1 for any other answer (an answer from the "
        "application instead means the path is not the middleware's), 2 when the server "
        "cannot be reached.",
    )
    send.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="the webhook URL, e.g. http://127.0.0.1:8000/postmark/bounce",
    )
    send.add_argument(
        "--provider",
        choices=tuple(PROVIDERS),
        default="postmark",
        metavar="NAME",
        help=f"whose webhook to send: {names} (default: postmark)",
    )
    send.add_argument(
        "--test-route",
        action="store_true",
        help="print how to configure a route that accepts these samples (SendGrid's TEST "
        "public key, the Amazon SES TEST topic and fetcher...) and the command to try, then exit",
    )
    send.add_argument("--user", metavar="NAME", help="HTTP Basic user name")
    send.add_argument(
        "--password",
        metavar="SECRET",
        help="HTTP Basic password (visible in your shell history: prefer BOUNCE_PASSWORD)",
    )
    send.add_argument(
        "--secret",
        metavar="KEY",
        help="Mailgun, Resend, Mandrill: the route's signing key; SparkPost, Brevo: its bearer "
        f"token (visible in your shell history: prefer {SECRET_ENV})",
    )
    send.add_argument(
        "--signed-url",
        metavar="URL",
        help="Mandrill: the URL to sign, as the route's Mandrill(url=...) names it "
        "(default: URL, without credentials)",
    )
    kinds = "; ".join(
        f"{p.label}: {', '.join(p.kinds)}" for p in SAMPLE_PROVIDERS.values() if p.kinds
    )
    send.add_argument(
        "--kind",
        metavar="KIND",
        help=f"the sample to send, for every provider but Postmark (default: hard). {kinds}",
    )
    send.add_argument(
        "--record-type",
        choices=RECORD_TYPES,
        metavar="RECORD",
        help=f"Postmark payload shape: {', '.join(RECORD_TYPES)} (default: Bounce)",
    )
    send.add_argument(
        "--type",
        choices=sorted(POSTMARK_TYPES),
        metavar="TYPE",
        help="Postmark bounce Type for Bounce and Legacy records, e.g. HardBounce (the "
        "default), SoftBounce, Transient, SpamNotification, ManuallyDeactivated",
    )
    send.add_argument(
        "--email",
        metavar="ADDRESS",
        help=f"the address that bounced (default: {DEFAULT_EMAIL})",
    )
    send.add_argument(
        "--id",
        type=int,
        metavar="N",
        help="Postmark: the event ID (default: a new random one, so each send is a new "
        "event; send one ID twice to see a redelivery)",
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for the answer (default: 10)",
    )
    send.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Post one webhook and print the answer."""
    provider = sample_provider(args.provider)
    if args.test_route:
        print(route_setup(provider.name, args.url))
        return EXIT_OK
    if not args.url:
        raise CommandError(
            "no URL: give the webhook URL, e.g. http://127.0.0.1:8000"
            + DEMO_PATHS.get(provider.name, "/hooks/" + provider.name)
        )
    if args.timeout <= 0:
        raise CommandError("--timeout must be a positive number of seconds")
    basic = provider.secret in ("basic", "credentials")
    target = parse_target(args.url, user=args.user, password=args.password, required=basic)
    sample = _sample(args, provider, target)
    print(f"POST {target.display}  ({sample.summary})")
    reply = post(target, sample.headers, sample.body, args.timeout)
    print(f"{reply.status} {reply.reason}")
    if not reply.from_middleware:
        # A whole HTML error page (Django's debug 404 is 72 lines) hides the one thing to fix.
        print(advice(reply, target.route, provider.name))
        return EXIT_FAILED
    if reply.text:
        print(reply.text)
    if reply.status == 401:
        print(
            unauthorized_advice(
                provider, challenge=reply.challenge, sent_credentials=bool(target.user)
            )
        )
    return EXIT_OK if 200 <= reply.status < 300 else EXIT_FAILED


def _sample(args: argparse.Namespace, provider: SampleProvider, target: Target) -> Sample:
    """The request to post, after refusing the options that do not apply to ``provider``."""
    if args.signed_url is not None and not provider.signs_url:
        raise CommandError(f"--signed-url applies to Mandrill only, not {provider.label}")
    if provider.secret == "basic":
        record_type = args.record_type or "Bounce"
        if args.kind is not None:
            raise CommandError(
                "--kind picks the sample of the other providers; for Postmark, "
                "--record-type and --type pick it"
            )
        if args.secret is not None:
            raise CommandError("Postmark checks HTTP Basic credentials: --user and --password")
        if args.type is not None and record_type not in ("Bounce", "Legacy"):
            raise CommandError("--type applies to Bounce and Legacy records only")
        if args.id is not None and record_type not in WITH_ID:
            raise CommandError(f"--id applies to {', '.join(sorted(WITH_ID))} records only")
        return postmark_sample(record_type, args.type, email=args.email, event_id=args.id)
    for option, value in (("--record-type", args.record_type), ("--type", args.type)):
        if value is not None:
            raise CommandError(f"{option} applies to Postmark only; --kind picks the sample")
    if args.id is not None:
        raise CommandError("--id applies to Postmark only")
    secret = args.secret
    if provider.secret == "test" and secret is not None:
        raise CommandError(
            f"{provider.label} samples are signed with the published TEST key, not --secret; "
            f"`send --provider {provider.name} --test-route` shows the route that accepts them"
        )
    if provider.secret == "credentials" and secret is not None:
        raise CommandError(
            f"{provider.label} signs nothing: its route checks HTTP Basic credentials "
            "(--user and --password, or the URL)"
        )
    if provider.secret == "token" and secret and target.user:
        raise CommandError(
            f"{provider.label} sends Basic credentials or a bearer token, not both: "
            "give --user and --password, or --secret"
        )
    # A token from the environment only when no credentials were given: an exported
    # BOUNCE_SECRET must not turn a Basic request into a refused one.
    wants = provider.secret == "key" or (provider.secret == "token" and not target.user)
    if wants and not secret:
        secret = os.environ.get(SECRET_ENV)
    if provider.secret == "key" and not secret:
        raise CommandError(
            f"no signing key: pass --secret (the route's {provider.label} signing key) "
            f"or set {SECRET_ENV}"
        )
    if provider.secret == "token" and not secret and not target.user:
        raise CommandError(
            f"no credentials: pass --user and --password (the route's {provider.label} "
            f"credentials) or --secret (its bearer token), or set {SECRET_ENV}"
        )
    url = None
    if provider.signs_url:
        url = args.signed_url or target.display
    return signed_sample(
        provider, args.kind or "hard", email=args.email or DEFAULT_EMAIL, secret=secret, url=url
    )


def advice(reply: Reply, route: str, provider: str = "postmark") -> str:
    """One line saying why an answer that is not the middleware's came, and what to try."""
    if 300 <= reply.status < 400:
        where = printable(reply.location) or "another URL"
        return (
            f"a redirect to {where}, not followed (Postmark does not follow redirects "
            "either; give every provider the final URL): send to the final URL"
        )
    shown = printable(route)
    conventional = DEMO_PATHS.get(provider)
    if len(route) > 1 and route.endswith("/"):
        hint = f"try {printable(route.rstrip('/'))}, without the trailing slash"
    elif route == conventional:
        hint = "is the middleware installed around this application, with this path?"
    elif conventional is not None:
        hint = (
            f"the demo and the examples use {conventional}; check the path your "
            "middleware is configured with"
        )
    else:
        hint = "check the path your middleware is configured with"
    return (
        f"not bounce-middleware's answer: the application (or a proxy) answered the POST to "
        f"{shown} itself; the middleware answers only its exact configured path ({hint})"
    )
