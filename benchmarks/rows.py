"""The rows of the comparison table, each with its app, its prepared requests and its checks.

Built after Django is set up (see :mod:`benchmarks.compare`). Row keys follow
the issue's numbering: 1 floor and hand-written check, 2 pass-through, 3 Django
trivial view, 4 bounce path, 5 classic Django view, 6 django-anymail, 7 the
middleware with the Django adapter.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.test.utils import override_settings

from bounce_middleware import BounceMiddleware
from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.adapters.django.wsgi import wrap
from bounce_middleware.model import Bounce
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import MemoryStore, Store

from .apps import (
    HELLO,
    ROUTE_PATHS,
    PathCheck,
    PathsCheck,
    bare_app,
    four_routes,
    path_check,
    paths_check,
)
from .django_project.data import USERS, WEBHOOK_PASSWORD, WEBHOOK_USER, user_email
from .harness import (
    Reply,
    Row,
    bounce_body,
    call,
    drive,
    expect,
    get_environ,
    post_environ,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

BOUNCE_PATH = "/postmark/bounce"
CLASSIC_PATH = "/classic/postmark/bounce"
ANYMAIL_PATH = "/anymail/postmark/tracking/"
ORDINARY_PATH = "/hello/"
NOTICE_MIDDLEWARE = "bounce_middleware.adapters.django.middleware.BounceNoticeMiddleware"


class Emails:
    """Users' addresses in a fixed spread-out order, shared by every webhook row."""

    def __init__(self) -> None:
        self._cycle: Iterator[str] = itertools.cycle(
            user_email(k * 7919 % USERS) for k in range(USERS)
        )

    def next(self) -> str:
        """The next address (each belongs to exactly one user)."""
        return next(self._cycle)


class Counter:
    """The no-op handler of row 4, counting its calls so the row can be checked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, bounce: Bounce) -> None:
        self.calls += 1


def _gets(path: str) -> Callable[[int], list[dict[str, Any]]]:
    def environs(n: int) -> list[dict[str, Any]]:
        # A server builds a fresh environ per request; Django writes into its copy.
        template = get_environ(path)
        return [dict(template) for _ in range(n)]

    return environs


def passthrough_row(key: str, label: str, app: WSGIApplication, *, fresh: bool) -> Row:
    """A GET of an ordinary page through ``app``; ``fresh``: a new environ per request."""

    def check() -> None:
        reply = call(app, get_environ(ORDINARY_PATH))
        expect(key, reply.code == 200, f"GET {ORDINARY_PATH} answered {reply.status}")
        expect(key, reply.body == HELLO, f"GET {ORDINARY_PATH} answered {reply.body!r}")

    def prepare(n: int) -> Callable[[], None]:
        # Apps of rows 1-2 never write to the environ: one is shared, as allocation-free
        # as the rows themselves.
        environs = _gets(ORDINARY_PATH)(n) if fresh else [get_environ(ORDINARY_PATH)] * n
        return lambda: drive(app, environs)

    return Row(key, label, check, prepare)


class WebhookRows:
    """Rows 4-7: webhook deliveries, each of a new event for an existing user."""

    def __init__(self, workdir: Path, django_app: WSGIApplication) -> None:
        self.workdir = workdir
        self.django_app = django_app
        self.emails = Emails()
        self.user = WEBHOOK_USER
        self.password = WEBHOOK_PASSWORD

    def environs(self, path: str, n: int) -> list[dict[str, Any]]:
        """``n`` deliveries of new HardBounce events to ``path``."""
        return [
            post_environ(path, bounce_body(self.emails.next()), self.user, self.password)
            for _ in range(n)
        ]

    def post(
        self, app: WSGIApplication, path: str, body: bytes, password: str | None = None
    ) -> Reply:
        """One delivery of ``body``, answered (for checks)."""
        return call(app, post_environ(path, body, self.user, password or self.password))

    def _check_auth(self, key: str, app: WSGIApplication, path: str) -> None:
        reply = self.post(app, path, bounce_body(self.emails.next()), "wrong")
        expect(key, reply.code in (400, 401, 403), f"a wrong password answered {reply.status}")

    # -- row 4 -------------------------------------------------------------

    def bounce_row(self, key: str, label: str, store: Store | None) -> Row:
        """The bounce path: auth, parse, a no-op handler, and ``store`` if any."""
        counter = Counter()
        app = BounceMiddleware(
            bare_app,
            path=BOUNCE_PATH,
            credentials=[f"{self.user}:{self.password}"],
            handlers=[counter],
            store=store,
        )
        stored = self._store_counter(store)
        expected = {"calls": 0}

        def check() -> None:
            self._check_auth(key, app, BOUNCE_PATH)
            body = bounce_body(self.emails.next())
            reply = self.post(app, BOUNCE_PATH, body)
            expect(key, reply.code == 200, f"a bounce answered {reply.status}: {reply.body!r}")
            expect(key, counter.calls == 1, f"the handler ran {counter.calls} times, not once")
            expected["calls"] = 1
            if store is not None:
                again = self.post(app, BOUNCE_PATH, body)
                expect(key, again.code == 200, f"a redelivery answered {again.status}")
                expect(key, counter.calls == 1, "a redelivery ran the handler again")
            verify(0)

        def verify(n: int) -> None:
            expected["calls"] += n
            expect(key, counter.calls == expected["calls"], f"{counter.calls} handler calls")
            if stored is not None:
                finished = stored()
                expect(key, finished == expected["calls"], f"{finished} events stored finished")

        def prepare(n: int) -> Callable[[], None]:
            environs = self.environs(BOUNCE_PATH, n)
            return lambda: drive(app, environs)

        return Row(key, label, check, prepare, verify, max_batch=5000)

    def _store_counter(self, store: Store | None) -> Callable[[], int] | None:
        if isinstance(store, MemoryStore):
            memory = store
            return lambda: sum(r.finished for r in memory.records(limit=None))
        if isinstance(store, SQLiteStore):
            path = store.path

            def finished_events() -> int:
                with sqlite3.connect(path) as conn:
                    (count,) = conn.execute(
                        "SELECT count(*) FROM bounce_event WHERE finished_at IS NOT NULL"
                    ).fetchone()
                conn.close()
                return int(count)

            return finished_events
        return None

    # -- rows 5, 6, 7 --------------------------------------------------------

    def database_row(self, key: str, label: str, app: WSGIApplication, path: str) -> Row:
        """A Django row: each delivery finds the user and records one notice."""
        # Rows 5-7 share the tables: each batch is checked against the counts before it.
        baseline: dict[str, tuple[int, int, int]] = {}
        dedup = app is not self.django_app

        def check() -> None:
            notices, events, _ = database_counts()
            self._check_auth(key, app, path)
            expect(key, database_counts()[0] == notices, "a refused delivery wrote a notice")
            body = bounce_body(self.emails.next())
            reply = self.post(app, path, body)
            expect(key, reply.code == 200, f"a bounce answered {reply.status}: {reply.body!r}")
            after, events_after, finished = database_counts()
            expect(key, after == notices + 1, f"one bounce wrote {after - notices} notices")
            expect(key, events_after == events + dedup, f"{events_after - events} events stored")
            expect(key, finished == events_after, "an event was left unfinished")
            if dedup:
                again = self.post(app, path, body)
                expect(key, again.code == 200, f"a redelivery answered {again.status}")
                expect(key, database_counts()[0] == after, "a redelivery wrote a second notice")

        def prepare(n: int) -> Callable[[], None]:
            baseline["before"] = database_counts()
            environs = self.environs(path, n)
            return lambda: drive(app, environs)

        def verify(n: int) -> None:
            notices, events, _ = baseline["before"]
            now_notices, now_events, now_finished = database_counts()
            expect(key, now_notices == notices + n, f"{n} bounces wrote {now_notices - notices}")
            stored = now_events - events
            expect(key, stored == (n if dedup else 0), f"{n} bounces stored {stored} events")
            expect(key, now_finished == now_events, "events were left unfinished")

        return Row(key, label, check, prepare, verify, max_batch=2000)


def database_counts() -> tuple[int, int, int]:
    """Notices, stored events, finished events (and the connection closed again)."""
    counts = (
        BounceNotice.objects.count(),
        BounceEvent.objects.count(),
        BounceEvent.objects.filter(finished=True).count(),
    )
    connections.close_all()
    return counts


def build_rows(workdir: Path) -> list[Row]:
    """Every row of the table, apps built and ready to check."""
    django_app = WSGIHandler()
    with override_settings(MIDDLEWARE=[]):
        # The middleware chain is built now, from the overridden list, and kept.
        bare_django = WSGIHandler()
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, NOTICE_MIDDLEWARE]):
        noticed_django = WSGIHandler()
    credentials = [f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"]

    def middleware(app: WSGIApplication) -> BounceMiddleware:
        return BounceMiddleware(app, path=BOUNCE_PATH, credentials=credentials)

    webhooks = WebhookRows(workdir, django_app)
    sqlite_store = SQLiteStore(workdir / "bounces.sqlite3")
    sqlite_store.check()
    return [
        passthrough_row("1a", "bare WSGI app (floor)", bare_app, fresh=False),
        passthrough_row(
            "1b",
            "hand-written path check (function)",
            path_check(bare_app, BOUNCE_PATH),
            fresh=False,
        ),
        passthrough_row(
            "1c", "hand-written path check (class)", PathCheck(bare_app, BOUNCE_PATH), fresh=False
        ),
        passthrough_row(
            "1d",
            "hand-written check of 4 paths (function)",
            paths_check(bare_app, ROUTE_PATHS),
            fresh=False,
        ),
        passthrough_row(
            "1e",
            "hand-written check of 4 paths (class)",
            PathsCheck(bare_app, ROUTE_PATHS),
            fresh=False,
        ),
        passthrough_row(
            "2", "BounceMiddleware pass-through, bare app", middleware(bare_app), fresh=False
        ),
        passthrough_row(
            "2b",
            "BounceMiddleware pass-through, 4 provider routes",
            BounceMiddleware(bare_app, routes=four_routes()),
            fresh=False,
        ),
        passthrough_row(
            "3a", "Django trivial view (startproject MIDDLEWARE)", django_app, fresh=True
        ),
        passthrough_row(
            "3b", "BounceMiddleware -> row 3a (pass-through)", middleware(django_app), fresh=True
        ),
        passthrough_row("3c", "Django trivial view, MIDDLEWARE = []", bare_django, fresh=True),
        passthrough_row(
            "3d", "BounceMiddleware -> row 3c (pass-through)", middleware(bare_django), fresh=True
        ),
        passthrough_row(
            "3e",
            "row 3b + BounceNoticeMiddleware, anonymous GET",
            middleware(noticed_django),
            fresh=True,
        ),
        webhooks.bounce_row("4a", "bounce path, no store", None),
        webhooks.bounce_row("4b", "bounce path, MemoryStore", MemoryStore()),
        webhooks.bounce_row("4c", "bounce path, SQLiteStore (WAL, NORMAL)", sqlite_store),
        webhooks.database_row("5", "classic hand-written Django view", django_app, CLASSIC_PATH),
        webhooks.database_row(
            "6", "django-anymail tracking webhook + receiver", django_app, ANYMAIL_PATH
        ),
        webhooks.database_row(
            "7", "BounceMiddleware + Django adapter (dedup)", wrap(django_app), BOUNCE_PATH
        ),
    ]
