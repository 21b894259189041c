"""The demo site in process, through WebTest: its handler, its page and its address form.

``tests/test_cli.py`` runs the same site as a real process behind waitress.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp, TestRequest

from bounce_middleware import Bounce, BounceKind, ConfigurationError
from bounce_middleware.cli.common import close_store
from bounce_middleware.cli.serve import banner as demo_banner
from bounce_middleware.demo import (
    BOUNCE_PATH,
    DB_ENV,
    DEFAULT_DB,
    DEMO_PATHS,
    SEED_USERS,
    Users,
    make_app,
)
from bounce_middleware.providers.postmark import parse_postmark
from bounce_middleware.samples import amazon_ses, mailgun, sendgrid
from bounce_middleware.sqlite_store import SQLiteStore
from bounce_middleware.testing import auth_headers, postmark_bounce, postmark_subscription_change

NOTICE = "Mail to this address bounced"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "demo.sqlite3"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(db)
    yield store
    store.close()


@pytest.fixture
def app(db: Path, store: SQLiteStore) -> TestApp:
    return TestApp(make_app(db, credentials=["postmark:pw"], store=store))


def post(app: TestApp, payload: dict[str, Any], status: int = 200) -> None:
    app.post_json(BOUNCE_PATH, payload, headers=auth_headers("postmark", "pw"), status=status)


def user_row(app: TestApp, email: str) -> str:
    """The users-table row showing ``email`` (the page's first table)."""
    users = app.get("/").text.split("<h2>")[0]
    [row] = [row for row in users.split("<tr>") if f"<td>{email}</td>" in row]
    return row


def test_the_page_lists_the_seeded_users_without_notices(app: TestApp) -> None:
    page = app.get("/")

    assert page.content_type == "text/html"
    assert page.headers["Cache-Control"] == "no-store"
    for name, email in SEED_USERS:
        assert name in page.text
        assert NOTICE not in user_row(app, email)
    assert "None yet." in page.text


def test_a_hard_bounce_flags_the_user_whose_address_bounced(app: TestApp) -> None:
    bounce = postmark_bounce(email="ANN@example.com", BouncedAt="2026-01-02T03:04:05Z")

    post(app, bounce)

    row = user_row(app, "ann@example.com")
    assert f"{NOTICE} (hard, 2026-01-02 03:04 UTC)" in row
    assert "unable to deliver your message" in row
    assert NOTICE not in user_row(app, "bob@example.com")
    assert f"postmark:{bounce['ID']}" in app.get("/").text  # in the events table


@pytest.mark.parametrize(
    "payload",
    [
        postmark_bounce("Transient", email="ann@example.com"),
        postmark_bounce("SoftBounce", email="ann@example.com"),
        postmark_subscription_change(suppress=False, email="ann@example.com"),
    ],
    ids=["Transient", "SoftBounce", "reactivation"],
)
def test_passing_trouble_is_recorded_but_flags_nobody(
    app: TestApp, payload: dict[str, Any]
) -> None:
    post(app, payload)

    assert NOTICE not in user_row(app, "ann@example.com")
    assert "<td>done</td>" in app.get("/").text


def test_complaints_and_suppressions_flag_too(app: TestApp) -> None:
    post(app, postmark_bounce("SpamComplaint", email="bob@example.com"))
    post(app, postmark_subscription_change(email="chloe@example.com"))

    assert f"{NOTICE} (complaint," in user_row(app, "bob@example.com")
    assert f"{NOTICE} (hard," in user_row(app, "chloe@example.com")


def test_a_bounce_for_an_unknown_address_changes_nothing(app: TestApp) -> None:
    post(app, postmark_bounce(email="stranger@example.com"))

    assert NOTICE not in app.get("/").text


def test_a_redelivery_runs_no_handler_and_the_handler_is_idempotent_anyway(
    app: TestApp, db: Path, store: SQLiteStore
) -> None:
    bounce = postmark_bounce(email="ann@example.com")
    post(app, bounce)
    post(app, bounce)
    # Run again by hand, as after a crash between its success and its recording.
    [parsed] = parse_postmark(store.records()[0].body).events
    Users(db).flag_bounced(parsed)

    assert app.get("/").text.count(NOTICE) == 1


def test_changing_the_address_clears_the_notice(app: TestApp) -> None:
    post(app, postmark_bounce(email="ann@example.com"))
    page = app.get("/")

    form = page.forms[0]  # Ann's row
    form["email"] = "ann@fixed.example.com"
    response = form.submit(status=303).follow()

    assert NOTICE not in response.text
    assert NOTICE not in user_row(app, "ann@fixed.example.com")


def test_the_notice_shows_only_while_the_address_is_the_one_that_bounced(
    app: TestApp, db: Path
) -> None:
    post(app, postmark_bounce(email="ann@example.com"))
    # A notice left behind by some other writer for an address the user no longer has.
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE demo_users SET email = 'ann@other.example.com' WHERE id = 1")
    connection.close()

    assert NOTICE not in user_row(app, "ann@other.example.com")


def test_everything_shown_is_escaped(app: TestApp) -> None:
    evil = '<b>"x"&amp;</b>@example.com'
    app.post("/users/2/email", {"email": evil}, status=303)
    post(app, postmark_bounce(email=evil, Description="<script>alert(1)</script>"))

    page = app.get("/").text

    assert "<b>" not in page
    assert "<script>" not in page
    assert "&lt;b&gt;&quot;x&quot;&amp;amp;&lt;/b&gt;@example.com" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("email", ["", "not-an-address", "a@b", "x" * 250 + "@example.com"])
def test_a_bad_address_is_refused(app: TestApp, email: str) -> None:
    response = app.post("/users/1/email", {"email": email}, status=400)

    assert "is not an e-mail address" in response.text
    assert "<td>ann@example.com</td>" in app.get("/").text


def test_unknown_pages_and_methods(app: TestApp) -> None:
    app.post("/users/99/email", {"email": "a@example.com"}, status=404)
    app.post(f"/users/{10**30}/email", {"email": "a@example.com"}, status=404)
    app.get("/users/1/email", status=405)
    app.post("/", status=405)
    app.get("/nothing-here", status=404)
    assert app.head("/").status_int == 200


def test_the_users_are_seeded_once(db: Path) -> None:
    for _ in range(2):
        store = SQLiteStore(db)
        app = TestApp(make_app(db, credentials=["postmark:pw"], store=store))
        assert app.get("/").text.count("<form") == len(SEED_USERS)
        store.close()


def test_the_default_store_is_sqlite_in_the_same_file(db: Path) -> None:
    middleware = make_app(db, credentials=["postmark:pw"])

    assert isinstance(middleware.store, SQLiteStore)
    assert middleware.store.path == db
    middleware.store.close()


def test_an_address_in_another_case_is_matched_beyond_ascii(app: TestApp) -> None:
    # SQLite's lower() folds ASCII only: "É" and "é" were two different addresses.
    app.post("/users/2/email", {"email": "Émile@Example.com"}, status=303)

    post(app, postmark_bounce(email="émile@example.com"))

    assert f"{NOTICE} (hard," in user_row(app, "Émile@Example.com")


def test_a_bounce_time_with_no_utc_equivalent_still_flags_the_user(db: Path, app: TestApp) -> None:
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
    bounce = Bounce(
        provider="postmark",
        id="1",
        email="ann@example.com",
        kind=BounceKind.HARD,
        type="HardBounce",
        bounced_at=late,
    )

    Users(db).flag_bounced(bounce)

    assert f"{NOTICE} (hard, 9999-12-31 23:59 -1400)" in user_row(app, "ann@example.com")


def test_make_app_without_arguments_opens_the_demos_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `bounce-middleware replay --app bounce_middleware.demo:make_app` calls.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DB_ENV, raising=False)
    with pytest.raises(ConfigurationError, match="no demo database at bounce-demo.sqlite3: run"):
        make_app()
    assert list(tmp_path.iterdir()) == []

    close_store(make_app(DEFAULT_DB, credentials=["postmark:pw"]).store)
    middleware = make_app()
    assert isinstance(middleware.store, SQLiteStore)
    assert middleware.store.path == tmp_path / DEFAULT_DB
    middleware.store.close()

    monkeypatch.setenv(DB_ENV, str(tmp_path / "other.sqlite3"))
    with pytest.raises(ConfigurationError, match="other.sqlite3"):
        make_app()


# -- every provider -----------------------------------------------------------------------------

SIGNING_KEY = "demo-signing-key-for-tests"


@pytest.fixture
def every_provider(db: Path, store: SQLiteStore) -> TestApp:
    """The demo with a known Mailgun signing key."""
    return TestApp(
        make_app(db, credentials=["postmark:pw"], mailgun_signing_key=SIGNING_KEY, store=store)
    )


def signed(provider: str, email: str, kind: str = "hard") -> tuple[dict[str, str], bytes]:
    """The provider's sample, signed as ``bounce-middleware send --provider`` signs it."""
    secret = SIGNING_KEY if provider == "mailgun" else None
    module = {"sendgrid": sendgrid, "mailgun": mailgun, "amazon_ses": amazon_ses}[provider]
    headers, body = module.sample_request(kind, email=email, secret=secret)
    return headers, body


def post_signed(
    app: TestApp, provider: str, request: tuple[dict[str, str], bytes], status: int = 200
) -> None:
    """POST a signed sample to ``provider``'s demo route, expecting ``status``."""
    headers, body = request
    blank = TestRequest.blank(DEMO_PATHS[provider], method="POST", headers=headers, body=body)
    response = app.do_request(blank, status="*")
    assert response.status_int == status, response.text


@pytest.mark.parametrize(
    ("provider", "says"),
    [
        ("sendgrid", "The receiving server rejected the message permanently."),
        # Mailgun's event describes nothing: the SMTP reply shows instead of "failed".
        ("mailgun", "5.1.1 The email account that you tried to reach does not exist."),
        ("amazon_ses", "Permanent bounce (General)."),
    ],
)
def test_each_providers_signed_hard_bounce_flags_the_user_on_its_route(
    every_provider: TestApp, provider: str, says: str
) -> None:
    post_signed(every_provider, provider, signed(provider, "bob@example.com"))

    row = user_row(every_provider, "bob@example.com")
    assert f"{NOTICE} (hard," in row
    assert f"{says} Please check the address." in row
    assert NOTICE not in user_row(every_provider, "ann@example.com")


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "amazon_ses"])
def test_a_soft_bounce_of_any_provider_flags_nobody(every_provider: TestApp, provider: str) -> None:
    post_signed(every_provider, provider, signed(provider, "bob@example.com", "soft"))

    assert NOTICE not in user_row(every_provider, "bob@example.com")
    assert "<td>soft</td>" in every_provider.get("/").text


def test_each_route_refuses_another_providers_request(every_provider: TestApp) -> None:
    request = signed("sendgrid", "bob@example.com")

    for provider in ("postmark", "mailgun", "amazon_ses"):
        post_signed(every_provider, provider, request, status=401)

    assert NOTICE not in every_provider.get("/").text


def test_the_handler_keeps_the_name_demo_databases_recorded(
    every_provider: TestApp, store: SQLiteStore
) -> None:
    # Users moved to demo_users; records completed before must not run the handler again.
    post(every_provider, postmark_bounce(email="ann@example.com"))

    [record] = store.records()
    assert record.completed == {"bounce_middleware.demo.Users.flag_bounced"}


def test_the_page_lists_the_webhook_routes(every_provider: TestApp) -> None:
    page = every_provider.get("/").text.split("<h2>Webhook routes</h2>")[1]

    for name, path in DEMO_PATHS.items():
        assert f"<li><code>{path}</code> {name}</li>" in page


def test_make_app_without_arguments_has_every_providers_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `replay --app bounce_middleware.demo:make_app` finds each record's provider by name.
    monkeypatch.setenv(DB_ENV, str(tmp_path / "demo.sqlite3"))
    close_store(make_app(tmp_path / "demo.sqlite3", credentials=["postmark:pw"]).store)

    middleware = make_app()

    assert {path: p.name for path, p in middleware.routes.items()} == {
        path: name for name, path in DEMO_PATHS.items()
    }
    close_store(middleware.store)


def test_without_cryptography_the_demo_serves_the_other_providers_and_says_why(
    db: Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an absent package looks like to the import system.
    for name in [n for n in sys.modules if n.split(".")[0] == "cryptography"] + ["cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)

    middleware = make_app(db, credentials=["postmark:pw"], store=store)

    assert sorted(p.name for p in middleware.routes.values()) == [
        "brevo", "mailgun", "mailjet", "mandrill", "postmark", "resend", "sparkpost"
    ]  # fmt: skip
    page = TestApp(middleware).get("/").text
    for name in ("sendgrid", "amazon_ses"):
        assert f"<li>{name}: not served, cryptography is not installed; install it with" in page
    banner = demo_banner(
        "127.0.0.1",
        8000,
        db,
        {"postmark": "pw", "mailgun": "key"},
        middleware.app.unserved,  # type: ignore[attr-defined]
    )
    assert re.search(r"/sendgrid/bounce +not served: cryptography is not installed", banner)
    assert "--provider sendgrid" not in banner
    assert "--provider mailgun --secret key --email" in banner
