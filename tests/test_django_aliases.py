"""The Django adapter end to end on SQLite and on a real PostgreSQL server.

Each test runs twice: on the ``default`` alias (SQLite) and with the whole
project routed to the ``postgresql`` alias (``tests/postgres.py``'s server).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from webtest import TestApp

from bounce_middleware.adapters.django.handlers import NAME as NOTIFY
from bounce_middleware.adapters.django.handlers import user_ids
from bounce_middleware.adapters.django.models import BounceEvent, BounceNotice
from bounce_middleware.adapters.django.prepared import statements
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.testing import postmark_bounce
from tests.django_app.support import ALIASES, log_in, on_alias, post_bounce, warnings_in


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database the whole project uses in this test."""
    with on_alias(request.param):
        yield request.param


@pytest.fixture
def testapp(alias: str) -> TestApp:
    return TestApp(get_wsgi_application())


def make_user(username: str, address: str) -> Any:
    return get_user_model().objects.create_user(
        username=username, password=f"{username}-pw", contact_email=address
    )


def test_a_user_is_found_and_told_whatever_the_case_of_a_non_ascii_address(
    testapp: TestApp, alias: str
) -> None:
    emile = make_user("emile", "Émile@example.com")
    make_user("emily", "emile@example.com")  # without the accent: another address
    post_bounce(testapp, postmark_bounce(email="émile@example.com"))

    notice = BounceNotice.objects.get()
    assert (notice.user_id, notice.email, notice.email_key) == (
        emile.pk,
        "émile@example.com",
        "émile@example.com",
    )
    assert BounceEvent.objects.get().email_key == "émile@example.com"
    [warning] = warnings_in(log_in(testapp, "emile", "emile-pw"))
    assert "émile@example.com" in warning
    assert warnings_in(testapp.get("/")) == []


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "orm"])
def test_user_lookup_folds_both_sides(alias: str, prepared: bool) -> None:
    upper = make_user("upper", "ÉMILE@EXAMPLE.COM").pk
    lower = make_user("lower", "émile@example.com").pk
    make_user("nul", "")
    found = user_ids(alias, "Émile@Example.com", prepared=prepared)
    assert sorted(found) == sorted([upper, lower])
    assert user_ids(alias, "emile@example.com", prepared=prepared) == []
    assert user_ids(alias, "x\x00@example.com", prepared=prepared) == []


def test_the_user_lookup_searches_the_folded_index(alias: str) -> None:
    # tests/django_app's Member indexes Folded("contact_email"), as the README suggests.
    make_user("emile", "Émile@example.com")
    prepared = statements(alias)
    assert prepared is not None and prepared.users is not None
    with connections[alias].cursor() as cursor:
        if alias == "default":
            cursor.execute("EXPLAIN QUERY PLAN " + prepared.users, ["x"])
        else:
            cursor.execute("SET enable_seqscan = off")  # a table of one row: scanned otherwise
            cursor.execute("EXPLAIN " + prepared.users, ["x"])
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "member_email_folded" in plan


def test_no_notice_after_changing_to_another_address(testapp: TestApp, alias: str) -> None:
    emile = make_user("emile", "Émile@example.com")
    post_bounce(testapp, postmark_bounce(email="émile@example.com"))
    emile.contact_email = "emile@new.example.com"
    emile.save()
    assert warnings_in(log_in(testapp, "emile", "emile-pw")) == []
    assert BounceNotice.objects.get().shown_at is None


def fail_completion(alias: str) -> str:
    """Make the write that finishes an event fail, on ``alias``; returns the undo SQL.

    On PostgreSQL the failure comes at COMMIT (a deferred constraint trigger): after
    the notices and the completion were written, before they are committed.
    """
    table = "bounce_middleware_bounceevent"
    with connections[alias].cursor() as cursor:
        if alias == "default":
            cursor.execute(
                f"CREATE TRIGGER fail_finish BEFORE UPDATE ON {table} WHEN NEW.finished "
                "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
            return "DROP TRIGGER fail_finish"
        cursor.execute(
            "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
        )
        cursor.execute(
            f"CREATE CONSTRAINT TRIGGER fail_finish AFTER UPDATE ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.finished) "
            "EXECUTE FUNCTION fail_at_commit()"
        )
        return f"DROP TRIGGER fail_finish ON {table}; DROP FUNCTION fail_at_commit()"


def test_a_failure_before_commit_leaves_neither_notices_nor_completion(
    testapp: TestApp, alias: str
) -> None:
    ann = make_user("ann", "ann@example.com")
    payload = postmark_bounce(email="ann@example.com")
    undo = fail_completion(alias)
    try:
        post_bounce(testapp, payload, status=500)
        event = BounceEvent.objects.get()
        assert (event.finished, event.completed, event.lease_token) == (False, "", "")
        assert not BounceNotice.objects.exists()
    finally:
        with connections[alias].cursor() as cursor:
            cursor.execute(undo)

    assert post_bounce(testapp, payload).text == "accepted\n"
    event.refresh_from_db()
    assert (event.finished, event.completed_handlers, event.attempts) == (
        True,
        frozenset({NOTIFY}),
        2,
    )
    assert list(BounceNotice.objects.values_list("user_id", flat=True)) == [ann.pk]
    assert post_bounce(testapp, payload).text == "already processed\n"
    assert BounceNotice.objects.count() == 1


def test_whatever_the_parser_accepts_is_stored_and_notified(testapp: TestApp, alias: str) -> None:
    # Over version 1's column limits (type 64, address 254), and NUL characters,
    # which PostgreSQL refuses in text: DataError, a 503 on every retry, a lost event.
    long_address = "A" * 240 + "@example.com"  # the user model's own limit is 254
    long_user = make_user("long", long_address)
    payloads = [
        postmark_bounce(email=long_address.lower(), Description="d" * 5000, Tag="t" * 300),
        postmark_bounce(email="nul\x00@example.com", Description="with \x00 NUL"),
        postmark_bounce(email="x" * 3000 + "@example.com", Type="T" * 300),
    ]
    for payload in payloads:
        post_bounce(testapp, payload)
    events = list(BounceEvent.objects.order_by("id"))
    assert [(e.finished, e.kind) for e in events] == [
        (True, "hard"),
        (True, "hard"),
        (True, "unknown"),
    ]
    assert (events[1].email, events[1].description) == ("nul\ufffd@example.com", "with \ufffd NUL")
    assert events[2].type == "T" * 300
    assert [bytes(e.body) for e in events] == [json.dumps(p).encode() for p in payloads]
    assert list(BounceNotice.objects.values_list("user_id", flat=True)) == [long_user.pk]
