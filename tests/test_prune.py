"""bounce_middleware.retention: durations, refusals, a store without counts, and the order
of receipt the database stores walk (on SQLite and on the real PostgreSQL server)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from bounce_middleware import ConfigurationError, MemoryStore, Store, retention
from bounce_middleware.model import BounceKind
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.retention import (
    SAFE_AGE,
    StoreCounts,
    counts_of,
    parse_duration,
    prune,
    prune_before,
)
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import Record
from tests.postgres import PostgresServer
from tests.postgres_store_case import database_url, empty
from tests.store_apps import LEASE, make_bounce


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0d", "'0d' is no time at all: give a positive duration"),
        ("0h0m", "is no time at all"),
        ("-5d", "'-5d' is negative: give how long ago, e.g. 90d"),
        ("90", "'90' is not a duration: use a whole number and a unit, s, m, h, d or w"),
        ("90 days", "is not a duration"),
        ("d", "is not a duration"),
        ("1.5d", "is not a duration"),
        ("", "is not a duration"),
        ("\x1b[31m9d", "is not a duration"),
        ("99999999d", "is longer than 1,000 years"),
        ("9" * 30 + "d", "is not a duration"),
    ],
)
def test_what_is_not_a_duration_says_why(text: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        parse_duration(text)


def test_the_safe_age_covers_every_providers_retries() -> None:
    # Resend's published schedule, the longest: at once, 5 s, 5 min, 30 min, 2, 5, 10, 10 h.
    resend = timedelta(seconds=5, minutes=35, hours=27)
    assert resend < SAFE_AGE
    assert timedelta(hours=24) < SAFE_AGE  # SendGrid, Mailjet


def test_prune_refuses_what_cannot_be_a_cut_off() -> None:
    store = MemoryStore()
    for age in (timedelta(0), timedelta(days=-1)):
        with pytest.raises(ConfigurationError, match="older_than must be a positive duration"):
            prune(store, age)
    with pytest.raises(ConfigurationError, match="is not a duration"):
        prune(store, "ninety days")
    with pytest.raises(ConfigurationError, match="reaches back before year 1"):
        prune(store, timedelta(days=999_999))
    for size in (0, -1, True, 2.5):
        with pytest.raises(ConfigurationError, match="batch_size must be a whole number"):
            prune(store, timedelta(days=1), batch_size=size)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="before must be an aware datetime"):
        prune_before(store, datetime(2026, 1, 1))


class NoRetention:
    """A store of one's own, written before prune and counts existed (records only)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        rejected: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        return self.inner.records(
            kind=kind, email=email, unfinished=unfinished, rejected=rejected, limit=limit
        )


def test_a_store_without_prune_is_refused_clearly() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"store NoRetention cannot prune: it has no prune\(before, \*, limit\) method",
    ):
        prune(NoRetention(), timedelta(days=90))  # type: ignore[arg-type]


def test_a_store_without_counts_is_counted_from_its_records() -> None:
    own = NoRetention()
    store = own.inner
    done = store.claim(make_bounce(1), lease_seconds=LEASE)
    store.complete(done, "a", finished=True)
    store.claim(make_bounce(2), lease_seconds=LEASE)
    store.resolve(store.reject("postmark", b"one", "refused"))
    store.reject("postmark", b"two", "refused")
    later = datetime.now(UTC) + timedelta(seconds=1)

    counted = counts_of(own, before=later)  # type: ignore[arg-type]

    assert counted == store.counts(before=later)
    assert (counted.events, counted.unfinished, counted.rejected_unresolved) == (2, 1, 1)
    assert counted.prunable == 1
    assert counts_of(own).prunable == 0  # type: ignore[arg-type]
    # A naive cut-off is UTC, as the stores' own counts take it.
    naive = later.replace(tzinfo=None)
    assert counts_of(own, before=naive).prunable == 1  # type: ignore[arg-type]


def test_the_summary_line() -> None:
    oldest = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert StoreCounts(12345, 3, 5, 1, oldest).summary() == (
        "12,345 events, 3 unfinished (oldest received 2026-03-04 05:06:07Z), 1 rejected unresolved"
    )
    assert StoreCounts(0, 0, 0, 0).summary() == "0 events, 0 unfinished, 0 rejected unresolved"
    # A naive time (a store of one's own) is UTC, whatever the host's time zone.
    naive = StoreCounts(1, 1, 0, 0, oldest.replace(tzinfo=None))
    assert "(oldest received 2026-03-04 05:06:07Z)" in naive.summary()


# -- the walk in order of receipt, on the databases ------------------------------------

#: A store, and a function running one SQL statement (``?`` parameters) on its database.
Database = tuple[Store, Callable[..., None]]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A SQLiteStore or a PostgresStore, and a function running SQL on its database."""
    if request.param == "sqlite":
        path = tmp_path / "bounces.sqlite3"
        sqlite_store = SQLiteStore(path)

        def run_sqlite(sql: str, *params: object) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(sql, params)
            conn.close()

        yield sqlite_store, run_sqlite
        sqlite_store.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = database_url(server)
    empty(url)
    pg_store = PostgresStore(url)

    def run_postgres(sql: str, *params: object) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s").encode(), params)

    yield pg_store, run_postgres
    pg_store.close()


def received(database: Database, event_id: int, moment: datetime) -> None:
    """Set when event ``event_id`` was received, as if it had come then."""
    store, run = database
    value: object = moment
    if isinstance(store, SQLiteStore):
        value = moment.astimezone(UTC).isoformat(timespec="microseconds")
    run("UPDATE bounce_event SET received_at = ? WHERE key = ?", value, f"postmark:{event_id}")


def settle(store: Store, *event_ids: int) -> None:
    for event_id in event_ids:
        claim = store.claim(make_bounce(event_id), lease_seconds=LEASE)
        store.complete(claim, "a", finished=True)


def test_events_out_of_order_by_minutes_are_still_pruned(
    database: Database,
) -> None:
    """Ids follow receipt times only roughly (transactions overlap, clocks step): the walk
    goes on past the cut-off for a while before it stops."""
    store, _ = database
    settle(store, 1, 2, 3)
    now = datetime.now(UTC)
    received(database, 1, now - timedelta(days=100))
    received(database, 2, now - timedelta(days=90) + timedelta(minutes=20))  # just too young
    received(database, 3, now - timedelta(days=91))  # a higher id, yet older than 2

    assert prune(store, timedelta(days=90), batch_size=10) == 2
    assert [r.key for r in store.records()] == ["postmark:2"]


def test_the_walk_stops_well_past_the_cut_off(database: Database) -> None:
    """A prune never reads the newer part of the table: it stops at the first event
    received more than an hour after the cut-off (an event stored out of order by more
    than that waits for a later prune)."""
    store, _ = database
    settle(store, 1, 2, 3)
    now = datetime.now(UTC)
    received(database, 1, now - timedelta(days=100))
    received(database, 2, now - timedelta(days=80))
    received(database, 3, now - timedelta(days=95))  # behind event 2 in the walk

    assert prune(store, timedelta(days=90)) == 1
    assert sorted(r.key for r in store.records()) == ["postmark:2", "postmark:3"]
    # A later cut-off, past event 2, reaches it.
    assert prune(store, timedelta(days=79)) == 2
    assert store.records() == []


class JournalStore(MemoryStore):
    """A MemoryStore writing down each ``prune`` call's result in ``journal``."""

    def __init__(self, journal: list[tuple[str, float]]) -> None:
        super().__init__()
        self.journal = journal

    def prune(self, before: datetime, *, limit: int) -> int:
        deleted = super().prune(before, limit=limit)
        self.journal.append(("prune", deleted))
        return deleted


@pytest.mark.parametrize("pause", [0.1, 0.0])
def test_prune_pauses_after_each_full_batch_when_asked(
    monkeypatch: pytest.MonkeyPatch, pause: float
) -> None:
    journal: list[tuple[str, float]] = []

    def sleep(seconds: float) -> None:
        journal.append(("sleep", seconds))
        time.sleep(seconds)

    # retention's own reference to the time module only: nothing else sleeps differently.
    monkeypatch.setattr(retention, "time", SimpleNamespace(sleep=sleep))
    store = JournalStore(journal)
    settle(store, *range(1, 6))
    later = datetime.now(UTC) + timedelta(seconds=1)

    assert prune_before(store, later, batch_size=2, pause=pause) == 5

    # Batches of 2, 2 and 1, then one that finds nothing: a pause after each full one.
    paused = [("sleep", pause)] if pause else []
    assert journal == [
        ("prune", 2),
        *paused,
        ("prune", 2),
        *paused,
        ("prune", 1),
        ("prune", 0),
    ]
    assert store.records() == []


# -- rows a prune skips ---------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_a_row_locked_by_a_delivery_is_skipped_and_every_other_old_event_goes(
    postgres: PostgresServer, batch_size: int
) -> None:
    """PostgresStore's delete skips a row another transaction has locked (a late
    redelivery of a finished event locks it for a moment): the prune carries on past it."""
    url = database_url(postgres)
    empty(url)
    store = PostgresStore(url)
    try:
        settle(store, *range(1, 8))
        store.claim(make_bounce(8), lease_seconds=LEASE)  # unfinished: stays
        later = datetime.now(UTC) + timedelta(days=1)
        with psycopg.connect(url) as holder:
            for locked in ("postmark:1", "postmark:5"):
                holder.execute("SELECT 1 FROM bounce_event WHERE key = %s FOR UPDATE", (locked,))
            assert prune_before(store, later, batch_size=batch_size) == 5
            assert sorted(r.key for r in store.records(limit=None)) == [
                "postmark:1",
                "postmark:5",
                "postmark:8",
            ]
            holder.rollback()
        # Once free, the next prune takes them.
        assert prune_before(store, later, batch_size=batch_size) == 2
        assert [r.key for r in store.records(limit=None)] == ["postmark:8"]
    finally:
        store.close()


class SkippingStore(MemoryStore):
    """A store of one's own whose ``prune`` leaves the events in ``busy`` alone (as a
    database skipping locked rows does), yet counts them against its ``limit``."""

    def __init__(self, busy: set[str]) -> None:
        super().__init__()
        self.busy = busy
        self.calls: list[int] = []

    def prune(self, before: datetime, *, limit: int) -> int:
        doomed = [
            r.key
            for r in reversed(self.records(limit=None))
            if r.finished and r.received_at < before
        ][:limit]
        deleted = 0
        for key in doomed:
            if key not in self.busy:
                del self._events[key]
                deleted += 1
        self.calls.append(deleted)
        return deleted


def test_retention_prune_goes_on_until_a_batch_deletes_nothing() -> None:
    store = SkippingStore(busy={"postmark:2"})
    settle(store, *range(1, 7))
    later = datetime.now(UTC) + timedelta(seconds=1)

    # A batch that deleted less than it was allowed does not mean nothing is left.
    assert prune_before(store, later, batch_size=2) == 5
    assert [r.key for r in store.records(limit=None)] == ["postmark:2"]
    assert store.calls == [1, 1, 1, 1, 1, 0]
