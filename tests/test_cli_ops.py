"""``bounce-middleware prune``, and the counts ``list``, ``replay`` and ``prune`` print,
on a SQLite file and on the real PostgreSQL server, by URL and through ``--app``."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bounce_middleware.cli import main
from bounce_middleware.postgres_store import PostgresStore
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.store import Store
from tests.postgres import PostgresServer
from tests.postgres_store_case import database_url, empty
from tests.store_apps import LEASE, make_bounce

DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
KEPT_HINT = (
    "(unfinished events older than the cut-off are kept: `bounce-middleware replay` runs "
    "their handlers again, `bounce-middleware list --unfinished` shows them)"
)


@dataclass
class Target:
    """A store, its URL for the command line, and a way to age what it holds."""

    url: str
    store: Store
    #: Run one SQL statement with ``?`` parameters on the store's database.
    run: Callable[..., None]

    def age(self, table: str, key: str, days: int) -> None:
        """Make the record ``key`` of ``table`` received ``days`` days ago."""
        moment = datetime.now(UTC) - timedelta(days=days)
        value: object = moment
        if isinstance(self.store, SQLiteStore):
            value = moment.isoformat(timespec="microseconds")
        self.run(f"UPDATE {table} SET received_at = ? WHERE key = ?", value, key)

    def keys(self) -> list[str]:
        return sorted(r.key for r in self.store.records(limit=None))


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        path = tmp_path / "bounces.sqlite3"
        store = SQLiteStore(path)
        store.check()

        def run_sqlite(sql: str, *params: object) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(sql, params)
            conn.close()

        yield Target(f"sqlite:///{path}", store, run_sqlite)
        store.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = database_url(server)
    empty(url)
    pg = PostgresStore(url)

    def run_postgres(sql: str, *params: object) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s").encode(), params)

    yield Target(url, pg, run_postgres)
    pg.close()


def populate(target: Target) -> str:
    """Two old finished events, an old unfinished one, a recent finished one, and old
    rejected requests (one resolved); returns the unresolved rejected request's key."""
    store = target.store
    for event_id in (1, 2, 4):
        claim = store.claim(make_bounce(event_id), lease_seconds=LEASE)
        store.complete(claim, "notify", finished=True)
    failed = store.claim(make_bounce(3), lease_seconds=LEASE)
    store.release(failed, finished=False)
    waiting = store.reject("postmark", b"waiting for a replay", "field ID is missing")
    resolved = store.reject("postmark", b"replayed", "field ID is missing")
    store.resolve(resolved)
    for key, days in (("postmark:1", 200), ("postmark:2", 100), ("postmark:3", 120)):
        target.age("bounce_event", key, days)
    target.age("bounce_event", "postmark:4", 10)
    for key in (waiting, resolved):
        target.age("bounce_rejected", key, 300)
    return waiting


def test_prune_deletes_old_finished_events_and_prints_the_counts(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting = populate(target)

    assert main(["prune", "--older-than", "90d", "--store", target.url]) == 0

    out, err = capsys.readouterr()
    assert re.fullmatch(
        rf"deleted 2 finished events received before {DATE} \(older than 90d\), "
        r"at most 1,000 per transaction\n",
        out,
    ), out
    oldest = (datetime.now(UTC) - timedelta(days=120)).strftime("%Y-%m-%d")
    assert re.fullmatch(
        rf"store: 2 events, 1 unfinished \(oldest received {oldest} \S+Z\), "
        rf"1 rejected unresolved\n{re.escape(KEPT_HINT)}\n",
        err,
    ), err
    assert target.keys() == ["postmark:3", "postmark:4"]
    rejected = target.store.records(rejected=True, limit=None)
    assert len(rejected) == 2 and waiting in {r.key for r in rejected}


def test_prune_dry_run_counts_and_deletes_nothing(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(target)

    assert main(["prune", "--older-than", "150d", "--store", target.url, "--dry-run"]) == 0

    out, err = capsys.readouterr()
    assert re.fullmatch(
        rf"would delete 1 finished event received before {DATE} \(older than 150d\)\n"
        r"dry run: nothing was deleted\n",
        out,
    ), out
    assert err.startswith("store: 4 events, 1 unfinished (oldest received ")
    assert len(target.keys()) == 4


def test_prune_in_batches_of_one(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    store = target.store
    for n, event_id in enumerate(range(10, 17)):  # in order of receipt, as ids are
        claim = store.claim(make_bounce(event_id), lease_seconds=LEASE)
        store.complete(claim, "notify", finished=event_id != 12)
        target.age("bounce_event", f"postmark:{event_id}", 200 - 10 * n)  # 200 to 140 days

    assert main(["prune", "--older-than", "21w", "--store", target.url, "--batch-size", "1"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("deleted 5 finished events received before ")
    assert out.endswith("(older than 21w), at most 1 per transaction\n")
    assert target.keys() == ["postmark:12", "postmark:16"]  # 21 weeks: 147 days


def test_list_prints_the_counts_on_stderr_and_leaves_stdout_to_the_listing(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(target)

    assert main(["list", "--store", target.url, "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 4
    assert re.fullmatch(
        rf"store: 4 events, 1 unfinished \(oldest received {DATE}\), 1 rejected unresolved\n",
        err,
    ), err

    assert main(["list", "--store", target.url, "--rejected"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("2 rejected request(s): 1 unresolved, 1 resolved")
    assert err.startswith("store: 4 events, 1 unfinished")


def test_a_cut_off_under_three_days_is_warned_about(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(target)

    assert main(["prune", "--older-than", "36h", "--store", target.url]) == 0

    out, err = capsys.readouterr()
    assert out.startswith("deleted 3 finished events received before ")
    assert err.splitlines()[0] == (
        "warning: --older-than 36h is under 3 days: a provider may still deliver such an "
        "event again, and a pruned event delivered again runs its handlers again"
    )
    assert target.keys() == ["postmark:3"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--older-than", "0d"], "--older-than: '0d' is no time at all: give a positive duration"),
        (["--older-than=-5d"], "--older-than: '-5d' is negative: give how long ago, e.g. 90d"),
        (["--older-than", "soon"], "--older-than: 'soon' is not a duration: use a whole number "
         "and a unit, s, m, h, d or w (90d, 12h, 30m; or 1d12h)"),
        (["--older-than", "90d", "--store", "memory://"], "--store memory:// would be a new, "
         "empty store in this process: name a sqlite:/// or postgresql:// store, or the "
         "application's own with --app MODULE:ATTR"),
        (["--older-than", "90d"], "no store: pass --store sqlite:///path/to/bounces.sqlite3 (or "
         "postgresql://user@host/dbname), or --app MODULE:ATTR for the store of your "
         "application's middleware"),
        (["--older-than", "90d", "--store", "sqlite:///no/such/bounces.sqlite3"],
         "no store file at 'no/such/bounces.sqlite3'"),
    ],
)  # fmt: skip
def test_prune_refuses_with_one_line(
    options: list[str],
    error: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    assert main(["prune", *options]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"bounce-middleware prune: error: {error}")
    assert err.count("\n") == 1


def test_prune_usage_errors_are_argparses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--older-than", "90d", "--batch-size", "0"]) == 2
    assert "argument --batch-size: expected 1 or more, got 0" in capsys.readouterr().err
    assert main(["prune", "--store", "sqlite:///x.sqlite3"]) == 2
    assert "the following arguments are required: --older-than" in capsys.readouterr().err


def test_a_store_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bounces.sqlite3"
    store = SQLiteStore(path)
    store.complete(store.claim(make_bounce(1), lease_seconds=LEASE), "notify", finished=True)
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE bounce_event SET received_at = '2020-01-01T00:00:00.000000+00:00'")
    conn.close()
    assert main(["prune", "--older-than", "4d", "--store", f"sqlite:///{path}?mode=ro"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("bounce-middleware prune: error: cannot prune the store: SQLite ")
    unreachable = "postgresql://u:secret-pw@127.0.0.1:1/x?connect_timeout=2"
    assert main(["prune", "--older-than", "90d", "--store", unreachable]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bounce-middleware prune: error: cannot prune the store: PostgreSQL")
    assert "secret-pw" not in err and err.count("\n") == 1


def test_a_dry_run_leaves_an_old_sqlite_file_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_sqlite_upgrade import make_v1_file, schema_of

    path = tmp_path / "bounces.sqlite3"
    make_v1_file(path)
    before = schema_of(path)

    assert main(["prune", "--older-than", "90d", "--store", f"sqlite:///{path}", "--dry-run"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("bounce-middleware prune: error: cannot read the store: ")
    assert "open it once writable" in err and err.count("\n") == 1
    # Opened read-only: not upgraded, nothing created.
    assert schema_of(path) == before and before[0] == 1


def test_a_dry_run_creates_no_tables_in_a_postgresql_database(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.url(postgres.create_database("dry_run"))

    assert main(["prune", "--older-than", "90d", "--store", url, "--dry-run"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("bounce-middleware prune: error: cannot read the store: PostgreSQL ")
    assert "no bounce-middleware tables" in err and err.count("\n") == 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('bounce_event')").fetchone() == (None,)
