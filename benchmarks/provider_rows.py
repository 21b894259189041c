"""The provider rows: one bounce per request, through the middleware and through django-anymail.

Built after Django is set up with :mod:`benchmarks.django_project.provider_settings`
(see :mod:`benchmarks.providers`). For each provider (:mod:`.provider_cases`):
the middleware's route (one ``BounceMiddleware(app, routes={...})`` with the
nine providers, a no-op handler, no store) and django-anymail's tracking view
for the same provider with a no-op ``tracking`` receiver, in the
``startproject`` project and with ``MIDDLEWARE = []``. Both sides get requests
from the same factory, signed as the provider signs them; every request
carries a new event for a new address.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from anymail.signals import tracking
from django.core.handlers.wsgi import WSGIHandler
from django.test.utils import override_settings

from bounce_middleware import BounceMiddleware
from bounce_middleware.model import Bounce, BounceKind

from .apps import ROUTE_PATHS, ROUTE_PATHS_II, five_routes, four_routes
from .django_project.data import WEBHOOK_PASSWORD, WEBHOOK_USER
from .django_project.provider_urls import ANYMAIL_PATHS
from .harness import Row, call, drive, expect, request_environ
from .provider_cases import Case, cases
from .rows import passthrough_row
from .signers import Request, Signers

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

#: Provider name -> the middleware's route for it (the order of ``four_routes``, then
#: of ``five_routes``).
ROUTES = dict(
    zip(
        ("postmark", "sendgrid", "mailgun", "amazon_ses",
         "mailjet", "sparkpost", "brevo", "resend", "mandrill"),
        ROUTE_PATHS + ROUTE_PATHS_II,
        strict=True,
    )
)  # fmt: skip
_CREDENTIALS = f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"


def _addresses() -> Iterator[str]:
    return itertools.cycle(f"user{n:05d}@example.com" for n in range(10_000))


class Calls:
    """The no-op receivers of both sides: calls and the last event, per provider."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.last: dict[str, tuple[str, str]] = {}

    def handler(self, bounce: Bounce) -> None:
        """The middleware's handler."""
        self.count[bounce.provider] += 1
        self.last[bounce.provider] = (bounce.kind.value, bounce.email)

    def receiver(self, sender: object, event: Any, esp_name: str, **kwargs: Any) -> None:
        """django-anymail's ``tracking`` receiver."""
        self.count[esp_name] += 1
        self.last[esp_name] = (str(event.event_type), event.recipient or "")


class ProviderRows:
    """Builds the rows: the trivial view, and per provider the middleware and anymail."""

    def __init__(self) -> None:
        self.calls = Calls()
        self.addresses = _addresses()
        self.django_app = WSGIHandler()
        with override_settings(MIDDLEWARE=[]):
            self.bare_django = WSGIHandler()
        tracking.connect(self.calls.receiver, weak=False, dispatch_uid="benchmarks.providers")
        self.middleware = BounceMiddleware(
            self.django_app,
            routes={**four_routes(ses_credentials=[_CREDENTIALS]), **five_routes()},
            handlers=[self.calls.handler],
        )

    def trivial(self) -> Row:
        """Row 3a of the comparison: Django's trivial view, ``startproject`` MIDDLEWARE."""
        return passthrough_row(
            "3a", "Django trivial view (startproject MIDDLEWARE)", self.django_app, fresh=True
        )

    def ours(self, key: str, case: Case) -> Row:
        """The middleware's route for ``case``: authenticate, parse, a no-op handler."""
        return self._row(
            key,
            f"{case.esp_name}: middleware route; {case.ours}",
            case,
            self.middleware,
            ROUTES[case.name],
            who=case.name,
            kind=BounceKind.HARD.value,
            refused_status=401,
            refusals={**case.refused, **case.refused_by_ours},
        )

    def anymail(self, key: str, case: Case, *, bare: bool) -> Row:
        """django-anymail's tracking view for ``case``, with a no-op receiver."""
        label = f"{case.esp_name}: django-anymail, MIDDLEWARE = []" if bare else None
        return self._row(
            key,
            label or f"{case.esp_name}: django-anymail; {case.anymail}",
            case,
            self.bare_django if bare else self.django_app,
            ANYMAIL_PATHS[case.name],
            who=case.esp_name,
            kind="bounced",
            # A failed check is a SuspiciousOperation, which Django answers 400.
            refused_status=400,
            refusals=case.refused,
        )

    def _row(
        self,
        key: str,
        label: str,
        case: Case,
        app: WSGIApplication,
        path: str,
        *,
        who: str,
        kind: str,
        refused_status: int,
        refusals: Mapping[str, Callable[[str], Request]],
    ) -> Row:
        calls = self.calls
        baseline = {"before": 0}

        def check() -> None:
            for what, make in refusals.items():
                before = calls.count[who]
                reply = call(app, request_environ(path, *make(next(self.addresses))))
                expect(key, reply.code == refused_status, f"{what} answered {reply.status}")
                expect(key, calls.count[who] == before, f"{what} reached the receiver")
            email = next(self.addresses)
            before = calls.count[who]
            reply = call(app, request_environ(path, *case.make(email)))
            expect(key, reply.code == 200, f"a bounce answered {reply.status}: {reply.body!r}")
            expect(key, calls.count[who] == before + 1, "a bounce was not received once")
            expect(key, calls.last.get(who) == (kind, email), f"received {calls.last.get(who)}")

        def prepare(n: int) -> Callable[[], None]:
            environs = [request_environ(path, *r) for r in case.take(n, self.addresses)]
            # Rows of one provider share its count: each batch is checked against its own start.
            baseline["before"] = calls.count[who]
            return lambda: drive(app, environs)

        def verify(n: int) -> None:
            received = calls.count[who] - baseline["before"]
            expect(key, received == n, f"{n} bounces were received {received} times")

        return Row(key, label, check, prepare, verify, max_batch=case.pool or 1_000_000)


def build_rows() -> tuple[list[Row], list[Case]]:
    """Every row, apps built and ready to check; and the cases, for the targets."""
    builder = ProviderRows()
    every = cases(Signers())
    rows = [builder.trivial()]
    for case in every:
        rows.append(builder.ours(case.short, case))
        rows.append(builder.anymail(f"{case.short}-any", case, bare=False))
        rows.append(builder.anymail(f"{case.short}-any0", case, bare=True))
    return rows, every
