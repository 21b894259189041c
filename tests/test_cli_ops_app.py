"""``prune``, ``list`` and ``replay`` on the application's own store (``--app``): a SQLite
file, a MemoryStore inside the application, a store of one's own without ``prune`` or
``counts``, and the Django store on SQLite and on PostgreSQL."""

from __future__ import annotations

import importlib
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bounce_middleware.cli import main
from tests.cli_project import Project, deliver
from tests.cli_project import any_project as any_project  # noqa: F401 - fixtures
from tests.cli_project import project as project  # noqa: F401
from tests.django_app.support import ALIASES
from tests.store_apps import LEASE, make_bounce
from tests.test_cli_ops import KEPT_HINT

DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"


def age_sqlite(project: Project, key: str, days: int) -> None:
    moment = datetime.now(UTC) - timedelta(days=days)
    with sqlite3.connect(project.store_url[len("sqlite:///") :]) as conn:
        conn.execute(
            "UPDATE bounce_event SET received_at = ? WHERE key = ?",
            (moment.isoformat(timespec="microseconds"), key),
        )
    conn.close()


def test_prune_app_prunes_the_applications_own_sqlite_store(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    old = deliver(project, 200, email="ann@example.com")
    project.broken.touch()
    stuck = deliver(project, 500, email="bob@example.com")
    project.broken.unlink()
    recent = deliver(project, 200, email="cy@example.com")
    age_sqlite(project, old, 40)
    age_sqlite(project, stuck, 40)
    capsys.readouterr()

    assert main(["prune", "--older-than", "30d", "--app", project.spec]) == 0

    out, err = capsys.readouterr()
    assert out.startswith("deleted 1 finished event received before ")
    assert err.startswith("store: 2 events, 1 unfinished (oldest received ")
    assert [r["key"] for r in project.listing()] == [recent, stuck]


def test_prune_app_on_a_store_inside_the_application(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """A MemoryStore lives in the application's process: --app is the only way to it."""
    done = deliver(any_project, 200)
    any_project.broken.touch()
    stuck = deliver(any_project, 500)
    any_project.broken.unlink()
    time.sleep(1.1)
    kept = deliver(any_project, 200)
    capsys.readouterr()

    assert main(["prune", "--older-than", "1s", *any_project.where]) == 0

    out, err = capsys.readouterr()
    assert out.startswith("deleted 1 finished event received before ")
    warning, counts, hint = err.splitlines()
    assert warning.startswith("warning: --older-than 1s is under 3 days")
    assert re.fullmatch(
        rf"store: 2 events, 1 unfinished \(oldest received {DATE}\), 0 rejected unresolved",
        counts,
    ), counts
    assert hint == (
        "(unfinished events older than the cut-off are kept: `bounce-middleware replay` runs "
        "their handlers again, `bounce-middleware list --unfinished` shows them)"
    )
    keys = [r["key"] for r in any_project.listing()]
    assert keys == [kept, stuck] and done not in keys


def test_replay_prints_the_counts_left_on_stderr(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "--app", project.spec]) == 0
    assert capsys.readouterr() == ("nothing to replay: every recorded bounce is finished\n", "")

    project.broken.touch()
    deliver(project, 500)
    deliver(project, 500)
    assert main(["replay", "--app", project.spec]) == 1  # still broken
    err = capsys.readouterr().err
    assert re.fullmatch(
        rf"store: 2 events, 2 unfinished \(oldest received {DATE}\), 0 rejected unresolved\n",
        err,
    ), err

    project.broken.unlink()
    assert main(["replay", "--app", project.spec]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "replayed 2 event(s): 2 ok, 0 failed"
    assert err == "store: 2 events, 0 unfinished, 0 rejected unresolved\n"


OLD_STORE_APP = """
from bounce_middleware import BounceMiddleware, MemoryStore
from bounce_middleware.providers import Postmark
from bounce_middleware.store import STORE_METHODS


class OldStore:
    # A store of one's own written before prune() and counts() existed.
    def __init__(self):
        self.inner = MemoryStore()


def _forward(name):
    return lambda self, *args, **kwargs: getattr(self.inner, name)(*args, **kwargs)


for _name in STORE_METHODS:
    setattr(OldStore, _name, _forward(_name))


def site(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the site"]


app = BounceMiddleware(site, routes={"/hook": Postmark(credentials=["u:pw"])}, store=OldStore())
"""


@pytest.fixture
def old_store_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    (tmp_path / "old_store_app_for_cli_tests.py").write_text(OLD_STORE_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    yield importlib.import_module("old_store_app_for_cli_tests")
    sys.modules.pop("old_store_app_for_cli_tests", None)


def test_a_store_of_ones_own_without_prune_is_refused_and_still_counted(
    old_store_app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    store = old_store_app.app.store
    store.complete(store.claim(make_bounce(1), lease_seconds=LEASE), "a", finished=True)
    store.claim(make_bounce(2), lease_seconds=LEASE)
    spec = "old_store_app_for_cli_tests:app"

    assert main(["prune", "--older-than", "90d", "--app", spec]) == 2
    assert capsys.readouterr().err == (
        "bounce-middleware prune: error: store OldStore cannot prune: it has no "
        "prune(before, *, limit) method (see the README's 'A store of your own')\n"
    )
    # Without counts(), list counts what records() lists.
    assert main(["list", "--app", spec]) == 0
    assert capsys.readouterr().err.startswith("store: 2 events, 1 unfinished (oldest received ")


NAIVE_COUNTS_APP = (
    OLD_STORE_APP
    + """
import dataclasses


class NaiveCountsStore(OldStore):
    # A store of one's own over a database that hands its UTC times back naive.
    def prune(self, before, *, limit):
        return self.inner.prune(before, limit=limit)

    def counts(self, *, before=None):
        counts = self.inner.counts(before=before)
        oldest = counts.oldest_unfinished.replace(tzinfo=None)
        return dataclasses.replace(counts, oldest_unfinished=oldest)


app = BounceMiddleware(
    site, routes={"/hook": Postmark(credentials=["u:pw"])}, store=NaiveCountsStore()
)
"""
)


def test_prune_takes_a_naive_oldest_unfinished_time_as_utc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "naive_counts_app_for_cli_tests.py").write_text(NAIVE_COUNTS_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    try:
        store = importlib.import_module("naive_counts_app_for_cli_tests").app.store
        stuck = store.claim(make_bounce(1), lease_seconds=LEASE)
        store.release(stuck, finished=False)
        [record] = store.records()
        spec = "naive_counts_app_for_cli_tests:app"
        for dry_run in ([], ["--dry-run"]):
            assert main(["prune", "--older-than", "90d", "--app", spec, *dry_run]) == 0
            err = capsys.readouterr().err
            assert err == (
                f"store: 1 event, 1 unfinished (oldest received "
                f"{record.received_at:%Y-%m-%d %H:%M:%S}Z), 0 rejected unresolved\n"
            )
    finally:
        sys.modules.pop("naive_counts_app_for_cli_tests", None)


DJANGO_APP = """
from bounce_middleware import BounceMiddleware
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.providers import Postmark


def site(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the site"]


app = BounceMiddleware(
    site, routes={{"/hook": Postmark(credentials=["u:pw"])}}, store=DjangoStore(using={alias!r})
)
"""


@pytest.mark.parametrize("alias", ALIASES)
def test_prune_and_list_app_on_the_django_store(
    alias: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bounce_middleware.adapters.django.models import BounceEvent
    from bounce_middleware.adapters.django.store import DjangoStore

    name = f"django_app_for_cli_ops_{alias}"
    (tmp_path / f"{name}.py").write_text(DJANGO_APP.format(alias=alias))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    store = DjangoStore(using=alias)
    for event_id in (1, 2, 3):
        claim = store.claim(make_bounce(event_id), lease_seconds=LEASE)
        store.complete(claim, "notify", finished=event_id != 2)
    events = BounceEvent.objects.using(alias)
    events.filter(key__in=["postmark:1", "postmark:2"]).update(
        received_at=datetime.now(UTC) - timedelta(days=100)
    )
    store.reject("postmark", b"refused", "field ID is missing")
    try:
        assert main(["prune", "--older-than", "90d", "--app", f"{name}:app"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("deleted 1 finished event received before ")
        assert err.startswith("store: 2 events, 1 unfinished (oldest received ")
        assert err.splitlines()[0].endswith("), 1 rejected unresolved")
        assert sorted(events.values_list("key", flat=True)) == ["postmark:2", "postmark:3"]

        assert main(["list", "--app", f"{name}:app", "--unfinished"]) == 0
        out, err = capsys.readouterr()
        assert "postmark:2" in out and "postmark:3" not in out
        assert err.startswith("store: 2 events, 1 unfinished")
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("alias", ALIASES)
def test_prune_on_a_django_store_without_time_zone_support(
    alias: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Any,
) -> None:
    """USE_TZ = False: Django keeps naive times in TIME_ZONE. The store compares them
    with a cut-off in that zone, and gives its counts back aware (printed in UTC)."""
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from bounce_middleware.adapters.django.models import BounceEvent
    from bounce_middleware.adapters.django.store import DjangoStore

    settings.TIME_ZONE = "America/New_York"
    settings.USE_TZ = False
    name = f"django_naive_app_for_cli_ops_{alias}"
    (tmp_path / f"{name}.py").write_text(DJANGO_APP.format(alias=alias))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    store = DjangoStore(using=alias)
    for event_id in (1, 2, 3):
        claim = store.claim(make_bounce(event_id), lease_seconds=LEASE)
        store.complete(claim, "notify", finished=event_id != 2)
    new_york = ZoneInfo("America/New_York")
    old = datetime.now(UTC) - timedelta(days=100)
    events = BounceEvent.objects.using(alias)
    events.filter(key__in=["postmark:1", "postmark:2"]).update(
        received_at=timezone.make_naive(old, new_york)
    )
    # 89 days old in UTC, yet more than 90 days old if its New York time were UTC.
    recent = datetime.now(UTC) - timedelta(days=90) + timedelta(hours=2)
    events.filter(key="postmark:3").update(received_at=timezone.make_naive(recent, new_york))

    counts = store.counts(before=datetime.now(UTC) - timedelta(days=90))
    assert counts.oldest_unfinished == old
    assert counts.oldest_unfinished.tzinfo is not None
    assert counts.prunable == 1
    try:
        assert main(["prune", "--older-than", "90d", "--app", f"{name}:app", "--dry-run"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("would delete 1 finished event received before ")
        assert main(["prune", "--older-than", "90d", "--app", f"{name}:app"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("deleted 1 finished event received before ")
        assert err.splitlines() == [
            f"store: 2 events, 1 unfinished (oldest received {old:%Y-%m-%d %H:%M:%S}Z), "
            "0 rejected unresolved",
            KEPT_HINT,
        ]
        assert sorted(events.values_list("key", flat=True)) == ["postmark:2", "postmark:3"]
    finally:
        sys.modules.pop(name, None)
