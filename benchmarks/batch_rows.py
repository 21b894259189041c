"""The rows of :mod:`benchmarks.batch`: events one per request and 1,000 per request.

SendGrid (a signed JSON array) with every store, and Mandrill (a signed,
form-encoded ``mandrill_events`` array, at most 1,000 events) with the SQLite
store and without a store. Each pair shares one middleware (both routes, one
no-op handler) and one store, so the only difference is how many events a
request carries. Every event is new (its own ``sg_event_id``; its own
message ``_id`` for Mandrill, whose key is ``(_id, event, ts)``) and a hard
bounce: all are dispatched and stored, the most a batch can cost (a real batch
is mostly deliveries and opens, which are acknowledged without a store write).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bounce_middleware import BounceMiddleware
from bounce_middleware.model import Bounce
from bounce_middleware.providers import SendGrid
from bounce_middleware.providers.mandrill import Mandrill
from bounce_middleware.samples.sendgrid import (
    TEST_PRIVATE_KEY_PEM,
    TEST_PUBLIC_KEY,
    sendgrid_event,
    sign_request,
)
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import Store

from .harness import Row, call, drive, expect, request_environ
from .provider_bodies import mandrill_bounce
from .provider_keys import MANDRILL_KEY, MANDRILL_URL
from .signers import mandrill_request

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ROUTE = "/hooks/sendgrid"
MANDRILL_ROUTE = "/hooks/mandrill"
#: Mandrill's batches hold at most 1,000 events (providers.md, "Mandrill").
MANDRILL_MAX = 1000
Request = tuple[dict[str, str], bytes]


@dataclass(frozen=True)
class Feed:
    """One provider's side of the rows: its route, and ``n`` new hard bounces signed."""

    name: str
    route: str
    request: Callable[[int], Request]


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The application behind the middleware (never reached: every request is a webhook)."""
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


class Finished:
    """Counts the events a store holds finished, above a mark (the id before a batch)."""

    def __init__(self, count: Callable[[int], int], top: Callable[[], int]) -> None:
        self.count = count
        self.top = top

    @classmethod
    def sqlite(cls, path: Path) -> Finished:
        """For a :class:`SQLiteStore` file (read through a connection of its own)."""

        def query(sql: str, *args: int) -> int:
            conn = sqlite3.connect(path)
            try:
                (value,) = conn.execute(sql, args).fetchone()
            finally:
                conn.close()
            return int(value or 0)

        return cls(
            lambda mark: query(
                "SELECT count(*) FROM bounce_event WHERE id > ? AND finished_at IS NOT NULL", mark
            ),
            lambda: query("SELECT max(id) FROM bounce_event"),
        )

    @classmethod
    def sqlalchemy(cls, engine: object) -> Finished:
        """For a ``SQLAlchemyStore``'s tables."""
        import sqlalchemy as sa

        from bounce_middleware.adapters.sqlalchemy.tables import BounceEvent

        assert isinstance(engine, sa.Engine)

        def scalar(statement: sa.Select[Any]) -> int:
            with engine.connect() as conn:
                return int(conn.execute(statement).scalar() or 0)

        return cls(
            lambda mark: scalar(
                sa.select(sa.func.count()).where(BounceEvent.id > mark, BounceEvent.finished)
            ),
            lambda: scalar(sa.select(sa.func.max(BounceEvent.id))),
        )


class BatchRows:
    """Builds the pairs of rows: per store, one event per request and ``size`` per request."""

    def __init__(self, size: int) -> None:
        self.size = size
        key = load_pem_private_key(TEST_PRIVATE_KEY_PEM.encode("ascii"), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.key = key
        self.calls = 0
        self.addresses: Iterator[str] = itertools.cycle(
            f"user{n:05d}@example.com" for n in range(10_000)
        )

    def handler(self, bounce: Bounce) -> None:
        """The no-op handler, counting its calls."""
        self.calls += 1

    def request(self, events: int) -> Request:
        """A signed SendGrid POST of ``events`` new hard bounces."""
        batch = [sendgrid_event("hard", email=next(self.addresses)) for _ in range(events)]
        return sign_request(batch, private_key=self.key)

    def mandrill_request(self, events: int) -> Request:
        """A signed Mandrill POST of ``events`` new hard bounces (``mandrill_events``)."""
        return mandrill_request([mandrill_bounce(next(self.addresses)) for _ in range(events)])

    def rows(self, sqlite_path: Path, postgres_url: str | None) -> list[Row]:
        """Every row: SQLite, no store, and both PostgreSQL stores when a URL is given."""
        store = SQLiteStore(sqlite_path)
        store.check()
        self.sqlite = Finished.sqlite(store.path)
        stores: list[tuple[str, str, Store | None, Finished | None, Any]] = [
            ("", "SQLiteStore", store, self.sqlite, None),
            ("-0", "no store", None, None, None),
        ]
        if postgres_url:
            import sqlalchemy as sa

            from bounce_middleware.adapters.sqlalchemy import SQLAlchemyStore, create_all

            from .batch_django import django_postgres

            engine = sa.create_engine(postgres_url)
            create_all(engine)
            pg_store = SQLAlchemyStore(engine)
            stores.append(
                ("-pg", "SQLAlchemyStore, PostgreSQL", pg_store, Finished.sqlalchemy(engine), None)
            )
            django_store, finished_above, top, scope = django_postgres(postgres_url)
            stores.append(
                (
                    "-dj",
                    "DjangoStore, PostgreSQL",
                    django_store,
                    Finished(finished_above, top),
                    scope,
                )
            )
        sendgrid = Feed("SendGrid", ROUTE, self.request)
        mandrill = Feed("Mandrill", MANDRILL_ROUTE, self.mandrill_request)
        rows = []
        for suffix, what, a_store, finished, scope in stores:
            app = BounceMiddleware(
                not_found,
                routes={
                    ROUTE: SendGrid(public_key=TEST_PUBLIC_KEY),
                    MANDRILL_ROUTE: Mandrill(key=MANDRILL_KEY, url=MANDRILL_URL),
                },
                handlers=[self.handler],
                store=a_store,
                scope=scope,
            )
            pairs = [("", sendgrid, self.size)]
            if suffix in ("", "-0"):  # Mandrill's target is SQLiteStore's; no store for context
                pairs.append(("md-", mandrill, min(self.size, MANDRILL_MAX)))
            for prefix, feed, size in pairs:
                single = f"{feed.name}: one event per request, {what}"
                batch = f"{feed.name}: {size:,} events per request, {what}"
                rows.append(self._row(f"{prefix}single{suffix}", single, app, feed, 1, finished))
                rows.append(self._row(f"{prefix}batch{suffix}", batch, app, feed, size, finished))
            if a_store is store:
                self.sqlite_app = app
        return rows

    def stored(self) -> int:
        """Events in the SQLite store (its largest id: nothing is ever deleted here)."""
        return self.sqlite.top()

    def prefill(self, events: int) -> None:
        """Store ``events`` more events in the SQLite store, in untimed batches."""
        for start in range(0, events, self.size):
            count = min(self.size, events - start)
            environ = request_environ(ROUTE, *self.request(count))
            drive(self.sqlite_app, [environ])
        self.calls = 0

    def _row(
        self,
        key: str,
        label: str,
        app: WSGIApplication,
        feed: Feed,
        events: int,
        finished: Finished | None,
    ) -> Row:
        marks = {"calls": 0, "top": 0}
        route = feed.route

        def post(request: Request) -> tuple[int, int]:
            """Status and handler calls of one request."""
            before = self.calls
            reply = call(app, request_environ(route, *request))
            return reply.code, self.calls - before

        def check() -> None:
            headers, body = feed.request(events)
            forged = (feed.request(events)[0], body)  # a signature of another batch
            top = finished.top() if finished else 0
            code, ran = post(forged)
            expect(key, code == 401 and ran == 0, f"a forged batch answered {code}, ran {ran}")
            if finished is not None:
                expect(key, finished.top() == top, "a forged batch was stored")
            code, ran = post((headers, body))
            expect(key, code == 200, f"{events} events answered {code}")
            expect(key, ran == events, f"{events} events ran the handler {ran} times")
            if finished is not None:
                stored = finished.count(top)
                expect(key, stored == events, f"{events} events left {stored} stored finished")
                code, ran = post((headers, body))
                expect(key, code == 200 and ran == 0, f"a redelivery answered {code}, ran {ran}")

        def prepare(n: int) -> Callable[[], None]:
            environs = [request_environ(route, *feed.request(events)) for _ in range(n)]
            marks["calls"] = self.calls
            marks["top"] = finished.top() if finished else 0
            return lambda: drive(app, environs)

        def verify(n: int) -> None:
            ran = self.calls - marks["calls"]
            expect(key, ran == n * events, f"{n * events} events ran the handler {ran} times")
            if finished is not None:
                stored = finished.count(marks["top"])
                expect(key, stored == n * events, f"{n * events} events: {stored} stored finished")

        # A batch row's requests are large: a handful per timed batch.
        return Row(
            key,
            label,
            check,
            prepare,
            verify,
            max_batch=200 if events > 1 else 20_000,
            min_batch=2 if events > 1 else 10,
            events=events,
        )
