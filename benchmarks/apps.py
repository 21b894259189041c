"""The plain WSGI apps of the pass-through rows: the floor and hand-written path checks.

Rows 1a-1e of :mod:`benchmarks.compare`, row 2b's four provider routes, and
the five routes of issue 13's providers (:mod:`benchmarks.providers`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bounce_middleware.providers import AmazonSES, Mailgun, Postmark, Provider, SendGrid

from .django_project.data import MAILGUN_SIGNING_KEY, WEBHOOK_PASSWORD, WEBHOOK_USER

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HELLO = b"Hello, world.\n"
_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_BODY = (HELLO,)


def bare_app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
    """Row 1a: the floor, a WSGI app that answers at once."""
    start_response("200 OK", _HEADERS)
    return _BODY


def webhook_stub(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
    """What a hand-written check would call on its path (never reached by these rows)."""
    start_response("204 No Content", [])
    return ()


def path_check(app: WSGIApplication, path: str) -> WSGIApplication:
    """Row 1b: the minimal hand-written path check, as a closure."""

    def checked(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if environ.get("PATH_INFO") == path:
            return webhook_stub(environ, start_response)
        return app(environ, start_response)

    return checked


class PathCheck:
    """Row 1c: the same check as a middleware class, as PEP 3333's examples write one."""

    def __init__(self, app: WSGIApplication, path: str) -> None:
        self.app = app
        self.path = path

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if environ.get("PATH_INFO") == self.path:
            return webhook_stub(environ, start_response)
        return self.app(environ, start_response)


#: Rows 1d, 1e and 2b: the paths of an application that receives from four providers.
ROUTE_PATHS = ("/hooks/postmark", "/hooks/sendgrid", "/hooks/mailgun", "/hooks/ses")


def paths_check(app: WSGIApplication, paths: Iterable[str]) -> WSGIApplication:
    """Row 1d: the hand-written check of several paths, as a closure over a set."""
    webhooks = frozenset(paths)

    def checked(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if environ.get("PATH_INFO") in webhooks:
            return webhook_stub(environ, start_response)
        return app(environ, start_response)

    return checked


class PathsCheck:
    """Row 1e: the check of several paths as a middleware class."""

    def __init__(self, app: WSGIApplication, paths: Iterable[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if environ.get("PATH_INFO") in self.paths:
            return webhook_stub(environ, start_response)
        return self.app(environ, start_response)


def four_routes(*, ses_credentials: Iterable[str] | None = None) -> dict[str, Provider]:
    """Postmark, SendGrid, Mailgun and Amazon SES on :data:`ROUTE_PATHS` (row 2b).

    The provider rows use them too, with Basic credentials on the SES route.
    """
    from bounce_middleware.samples.amazon_ses import TEST_SNS_TOPIC_ARN, test_fetcher
    from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY

    providers: list[Provider] = [
        Postmark(credentials=[f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"]),
        SendGrid(public_key=TEST_PUBLIC_KEY),
        Mailgun(signing_key=MAILGUN_SIGNING_KEY),
        AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=test_fetcher, credentials=ses_credentials),
    ]
    return dict(zip(ROUTE_PATHS, providers, strict=True))


#: The routes of issue 13's providers (the provider rows).
ROUTE_PATHS_II = ("/hooks/mailjet", "/hooks/sparkpost", "/hooks/brevo", "/hooks/resend",
                  "/hooks/mandrill")  # fmt: skip


def five_routes() -> dict[str, Provider]:
    """Mailjet, SparkPost, Brevo, Resend and Mandrill on :data:`ROUTE_PATHS_II`.

    Basic credentials for the first three (as django-anymail checks them), the
    shared keys of :mod:`benchmarks.provider_keys` for the signed two.
    """
    from bounce_middleware.providers.brevo import Brevo
    from bounce_middleware.providers.mailjet import Mailjet
    from bounce_middleware.providers.mandrill import Mandrill
    from bounce_middleware.providers.resend import Resend
    from bounce_middleware.providers.sparkpost import SparkPost

    from .provider_keys import MANDRILL_KEY, MANDRILL_URL, RESEND_SECRET

    credentials = [f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"]
    providers: list[Provider] = [
        Mailjet(credentials=credentials),
        SparkPost(credentials=credentials),
        Brevo(credentials=credentials),
        Resend(secret=RESEND_SECRET),
        Mandrill(key=MANDRILL_KEY, url=MANDRILL_URL),
    ]
    return dict(zip(ROUTE_PATHS_II, providers, strict=True))
