"""The Flask adapter against a real Flask app, Flask-SQLAlchemy on SQLite and Flask-Login."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, login_user
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import orm
from webtest import TestApp

from bounce_middleware import Bounce, BounceKind, ConfigurationError
from bounce_middleware.adapters.flask import BounceExtension
from bounce_middleware.adapters.sqlalchemy import Notice, SQLAlchemyStore, create_all
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.auth_cases import AUTH_CASES, AuthCase, assert_auth_case

PATH = "/postmark/bounce"
HEADERS = auth_headers("postmark", "s3cret")


class Base(orm.DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(Base):
    """A Flask-Login user; the properties are what ``UserMixin`` would give."""

    __tablename__ = "users"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    email: orm.Mapped[str] = orm.mapped_column(sa.String(320))

    is_active = True
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)


def create_app(
    db_path: Path,
    bounces: BounceExtension | None = None,
    *,
    name: str = "shop",
    **config: Any,
) -> flask.Flask:
    """A small app: log in by address, change your address, see flashed messages."""
    app = flask.Flask(name)
    app.config.update(
        {
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
            "BOUNCE_PATH": PATH,
            "BOUNCE_CREDENTIALS": ["postmark:s3cret"],
            **config,
        }
    )
    db.init_app(app)
    login = LoginManager(app)
    login.user_loader(lambda user_id: db.session.get(User, int(user_id)))
    (bounces or BounceExtension(db=db, user_model=User)).init_app(app)

    @app.get("/")
    def home() -> str:
        messages: list[tuple[str, str]] = flask.get_flashed_messages(with_categories=True)  # type: ignore[assignment]
        return "".join(f"[{category}] {message}\n" for category, message in messages) or "-"

    @app.post("/login")
    def login_view() -> ResponseReturnValue:
        user = db.session.scalar(sa.select(User).where(User.email == flask.request.form["email"]))
        if user is None:
            flask.abort(403)
        login_user(user)
        return flask.redirect("/")

    @app.post("/email")
    def change_email() -> ResponseReturnValue:
        from flask_login import current_user

        current_user.email = flask.request.form["email"]
        db.session.commit()
        return flask.redirect("/")

    with app.app_context():
        db.create_all()
        create_all(db.engine)
        db.session.add_all([User(email="ann@example.com"), User(email="bob@example.com")])
        db.session.commit()
    return app


def notices(app: flask.Flask) -> list[Notice]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Notice).order_by(Notice.id)))


def post_bounce(testapp: TestApp[Any], payload: dict[str, Any], status: int = 200) -> str:
    response = testapp.post(
        PATH,
        json.dumps(payload),
        headers={**HEADERS, "Content-Type": "application/json"},
        status=status,
    )
    return response.text


def log_in(testapp: TestApp[Any], email: str) -> str:
    return testapp.post("/login", {"email": email}).follow().text


@pytest.fixture
def app(tmp_path: Path) -> flask.Flask:
    return create_app(tmp_path / "app.sqlite3")


@pytest.fixture
def testapp(app: flask.Flask) -> TestApp[Any]:
    return TestApp(app)


def test_bounce_recorded_and_flashed_once(app: flask.Flask, testapp: TestApp[Any]) -> None:
    assert post_bounce(testapp, postmark_bounce(email="ANN@Example.com")) == "accepted\n"

    [notice] = notices(app)
    assert (notice.user_id, notice.kind, notice.shown_at) == ("1", "hard", None)
    store = BounceExtension.state(app).middleware.store
    assert isinstance(store, SQLAlchemyStore)
    [record] = store.records()
    assert record.finished and record.email == "ANN@Example.com"

    page = log_in(testapp, "ann@example.com")
    assert page.startswith("[warning] We could not deliver e-mail to ANN@Example.com: ")
    assert "unknown user, mailbox not found" in page  # the provider's description
    assert testapp.get("/").text == "-"
    assert log_in(testapp, "ann@example.com") == "-"
    assert notices(app)[0].shown_at is not None


def test_notices_and_completion_commit_together(app: flask.Flask, testapp: TestApp[Any]) -> None:
    """The user store is transactional: one commit holds its notice and its completion."""
    with app.app_context():
        engine = db.engine
    commits: list[object] = []
    sa.event.listen(engine, "commit", commits.append)
    post_bounce(testapp, postmark_bounce(email="bob@example.com"))
    assert len(commits) == 2  # the claim; the notice with the completion
    store = BounceExtension.state(app).middleware.store
    assert store is not None
    [record] = store.records()
    assert record.finished
    assert record.completed == {"bounce_middleware.adapters.sqlalchemy.UserBounceHandler"}


def test_other_users_see_nothing(testapp: TestApp[Any]) -> None:
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    assert log_in(testapp, "bob@example.com") == "-"


def test_notice_shown_on_the_next_request_of_a_logged_in_user(testapp: TestApp[Any]) -> None:
    assert log_in(testapp, "ann@example.com") == "-"
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    assert "ann@example.com" in testapp.get("/").text
    assert testapp.get("/").text == "-"


def test_notice_shown_on_get_only(app: flask.Flask, testapp: TestApp[Any]) -> None:
    """As in every adapter (the core's NOTICE_METHODS): not on HEAD, whose answer has no
    body, nor on a POST, which may be the form changing the address."""
    assert log_in(testapp, "ann@example.com") == "-"
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    testapp.head("/")
    testapp.post("/email", {"email": "ann@example.com"})  # an unrelated form post
    assert [n.shown_at for n in notices(app)] == [None]
    assert "ann@example.com" in testapp.get("/").text
    assert notices(app)[0].shown_at is not None


def test_addresses_match_with_unicode_folding(app: flask.Flask, testapp: TestApp[Any]) -> None:
    with app.app_context():
        db.session.add(User(email="Émile@example.com"))
        db.session.commit()
    post_bounce(testapp, postmark_bounce(email="émile@example.com"))
    assert [n.user_id for n in notices(app)] == ["3"]
    assert "émile@example.com" in log_in(testapp, "Émile@example.com")


def test_no_notice_after_the_address_changed(app: flask.Flask, testapp: TestApp[Any]) -> None:
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    with app.app_context():
        db.session.execute(sa.update(User).values(email="ann@new.example.com").where(User.id == 1))
        db.session.commit()
    assert log_in(testapp, "ann@new.example.com") == "-"


def test_changing_address_over_http_leaves_old_bounces_silent(testapp: TestApp[Any]) -> None:
    assert log_in(testapp, "ann@example.com") == "-"
    testapp.post("/email", {"email": "ann@new.example.com"})
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    assert testapp.get("/").text == "-"


def test_unknown_address_is_accepted_and_ignored(app: flask.Flask, testapp: TestApp[Any]) -> None:
    assert post_bounce(testapp, postmark_bounce(email="nobody@example.com")) == "accepted\n"
    assert notices(app) == []


def test_soft_bounce_does_not_notify_by_default(app: flask.Flask, testapp: TestApp[Any]) -> None:
    post_bounce(testapp, postmark_bounce("SoftBounce", email="ann@example.com"))
    assert notices(app) == []


def test_duplicate_delivery_runs_handlers_once(tmp_path: Path) -> None:
    calls: list[str] = []
    app = create_app(
        tmp_path / "app.sqlite3",
        BounceExtension(db=db, user_model=User, handlers=[lambda b: calls.append(b.key)]),
    )
    testapp = TestApp(app)
    payload = postmark_bounce(email="ann@example.com")
    assert post_bounce(testapp, payload) == "accepted\n"
    assert post_bounce(testapp, payload) == "already processed\n"
    assert len(calls) == 1
    assert len(notices(app)) == 1


def test_handler_failure_then_retry_completes(tmp_path: Path) -> None:
    seen: list[str] = []

    def flaky(bounce: Bounce) -> None:
        # Runs in the app context: current_app and the app's session work here.
        seen.append(flask.current_app.name)
        assert db.session.get(User, 1) is not None
        if len(seen) == 1:
            raise RuntimeError("mail server down")

    bounces = BounceExtension(db=db, user_model=User)
    app = create_app(tmp_path / "app.sqlite3", bounces)
    with app.app_context():
        bounces.add_handler(flaky, name="flaky")
    testapp = TestApp(app)
    payload = postmark_bounce(email="ann@example.com")

    post_bounce(testapp, payload, status=500)
    assert len(notices(app)) == 1  # the user store handler completed before
    store = BounceExtension.state(app).middleware.store
    assert store is not None
    [record] = store.records()
    assert not record.finished
    assert record.completed == {"bounce_middleware.adapters.sqlalchemy.UserBounceHandler"}

    assert post_bounce(testapp, payload) == "accepted\n"
    assert seen == ["shop", "shop"]
    assert len(notices(app)) == 1
    assert store.records()[0].finished
    assert "ann@example.com" in log_in(testapp, "ann@example.com")


def test_one_app_context_per_delivery(tmp_path: Path) -> None:
    contexts: list[object] = []

    def first(bounce: Bounce) -> None:
        flask.g.seen = bounce.key
        contexts.append(flask.g._get_current_object())

    def second(bounce: Bounce) -> None:
        assert flask.g.seen == bounce.key  # the same context as the first handler's
        contexts.append(flask.g._get_current_object())

    app = create_app(tmp_path / "app.sqlite3", BounceExtension(db=db, handlers=[first, second]))
    testapp = TestApp(app)
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    post_bounce(testapp, postmark_bounce(email="bob@example.com"))
    assert len(contexts) == 4
    assert contexts[0] is contexts[1] and contexts[2] is contexts[3]
    assert contexts[0] is not contexts[2]  # a new one for the next delivery
    assert not flask.has_app_context()


def test_session_cleaned_up_after_a_failing_handler(tmp_path: Path) -> None:
    sessions: list[orm.Session] = []

    def broken(bounce: Bounce) -> None:
        session = db.session()
        sessions.append(session)
        session.add(User(email="half-done@example.com"))
        session.flush()
        raise RuntimeError("boom")

    app = create_app(tmp_path / "app.sqlite3", BounceExtension(db=db, handlers=[broken]))
    post_bounce(TestApp(app), postmark_bounce(email="ann@example.com"), status=500)

    [session] = sessions
    assert not session.in_transaction() and not session.new and not session.identity_map
    with app.app_context():
        assert db.session() is not session
        assert db.session.scalar(sa.select(User).filter_by(email="half-done@example.com")) is None


def test_a_failed_handlers_writes_never_commit_with_the_next_handler(tmp_path: Path) -> None:
    def broken(bounce: Bounce) -> None:
        db.session.add(User(email="half-done@example.com"))
        db.session.flush()
        raise RuntimeError("boom")

    def tidy(bounce: Bounce) -> None:
        db.session.add(User(email="tidy@example.com"))
        db.session.commit()

    app = create_app(tmp_path / "app.sqlite3", BounceExtension(db=db, handlers=[broken, tidy]))
    post_bounce(TestApp(app), postmark_bounce(email="ann@example.com"), status=500)
    with app.app_context():
        emails = set(db.session.scalars(sa.select(User.email)))
    assert "tidy@example.com" in emails and "half-done@example.com" not in emails


def test_user_handler_is_atomic(tmp_path: Path) -> None:
    app = create_app(tmp_path / "app.sqlite3")
    with app.app_context():
        db.session.add(User(email="Ann@Example.com"))  # a second account, same address
        db.session.commit()
        # Make the second insert fail: the first must not be committed either.
        db.session.execute(
            sa.text(
                "CREATE TRIGGER no_third BEFORE INSERT ON bounce_notices "
                "WHEN NEW.user_id = '3' BEGIN SELECT RAISE(ABORT, 'no'); END"
            )
        )
        db.session.commit()
    testapp = TestApp(app)
    payload = postmark_bounce(email="ann@example.com")
    post_bounce(testapp, payload, status=500)
    assert notices(app) == []
    with app.app_context():
        db.session.execute(sa.text("DROP TRIGGER no_third"))
        db.session.commit()
    post_bounce(testapp, payload)
    assert [n.user_id for n in notices(app)] == ["1", "3"]


def test_two_apps_in_one_process(tmp_path: Path) -> None:
    bounces = BounceExtension(db=db, user_model=User)
    shop = create_app(tmp_path / "shop.sqlite3", bounces, name="shop")
    blog = create_app(
        tmp_path / "blog.sqlite3",
        bounces,
        name="blog",
        BOUNCE_PATH="/hooks/postmark",
        BOUNCE_NOTICE_CATEGORY="error",
    )
    assert BounceExtension.state(shop) is not BounceExtension.state(blog)

    post_bounce(TestApp(shop), postmark_bounce(email="ann@example.com"))
    assert len(notices(shop)) == 1
    assert notices(blog) == []

    blog_client = TestApp(blog)
    blog_client.post(
        "/hooks/postmark",
        json.dumps(postmark_bounce(email="bob@example.com")),
        headers={**HEADERS, "Content-Type": "application/json"},
    )
    assert [n.user_id for n in notices(blog)] == ["2"]
    assert log_in(blog_client, "bob@example.com").startswith("[error] ")
    assert log_in(TestApp(shop), "bob@example.com") == "-"
    # The bounce path of one app is an ordinary (missing) page of the other.
    blog_client.post(PATH, status=404)


def test_second_registration_refused(app: flask.Flask) -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        BounceExtension(app, db=db, user_model=User)


def test_extension_with_app_argument(tmp_path: Path) -> None:
    app = flask.Flask("direct")
    app.config.update(BOUNCE_PATH=PATH, BOUNCE_CREDENTIALS="postmark:s3cret")
    calls: list[Bounce] = []
    BounceExtension(app, handlers=[calls.append])
    post_bounce(TestApp(app), postmark_bounce(email="ann@example.com"))
    assert [b.email for b in calls] == ["ann@example.com"]
    assert BounceExtension.state(app).middleware.store is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"BOUNCE_PATHS": "/x"}, "unknown setting 'BOUNCE_PATHS'; known: BOUNCE_PATH, "),
        ({"BOUNCE_CREDENTIALS": None}, "'BOUNCE_CREDENTIALS' is required"),
        ({"BOUNCE_NOTIFY_KINDS": "hard bogus"}, "'BOUNCE_NOTIFY_KINDS' is invalid"),
        ({"BOUNCE_NOTICE_MESSAGE": "{user}"}, "BOUNCE_NOTICE_MESSAGE"),
        ({"BOUNCE_MAX_BODY_SIZE": "lots"}, "'BOUNCE_MAX_BODY_SIZE' is invalid"),
        ({"BOUNCE_NOTICE": True}, "BOUNCE_NOTICE needs db and user_model"),
    ],
)
def test_bad_configuration(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    config = {"BOUNCE_PATH": PATH, "BOUNCE_CREDENTIALS": "postmark:s3cret", **config}
    app = flask.Flask("bad")
    app.config.update({k: v for k, v in config.items() if v is not None})
    with pytest.raises(ConfigurationError, match=message):
        BounceExtension(app)
    assert "bounce_middleware" not in app.extensions


def test_db_must_be_initialised_first(tmp_path: Path) -> None:
    app = flask.Flask("early")
    app.config.update(BOUNCE_PATH=PATH, BOUNCE_CREDENTIALS="postmark:s3cret")
    with pytest.raises(ConfigurationError, match=r"db.init_app\(app\) before"):
        BounceExtension(app, db=db, user_model=User)


def test_configured_wording_category_and_kinds(tmp_path: Path) -> None:
    app = create_app(
        tmp_path / "app.sqlite3",
        BOUNCE_NOTIFY_KINDS="hard soft",
        BOUNCE_NOTICE_MESSAGE="Mail to {email} failed ({kind}, {type}): {description}",
        BOUNCE_NOTICE_CATEGORY="danger",
        BOUNCE_MAX_BODY_SIZE="4096",
    )
    testapp = TestApp(app)
    post_bounce(testapp, postmark_bounce("SoftBounce", email="ann@example.com"))
    assert log_in(testapp, "ann@example.com") == (
        "[danger] Mail to ann@example.com failed (soft, SoftBounce): Unable to temporarily "
        "deliver message (i.e. mailbox full, account disabled, exceeds quota, out of disk "
        "space).\n"
    )
    big = postmark_bounce(email="ann@example.com", Details="x" * 5000)
    post_bounce(testapp, big, status=413)


def test_custom_user_lookup(tmp_path: Path) -> None:
    def lookup() -> tuple[object, str] | None:
        user_id = flask.request.headers.get("X-User")
        if user_id is None:
            return None
        user = db.session.get(User, int(user_id))
        return None if user is None else (user.id, user.email)

    app = create_app(
        tmp_path / "app.sqlite3", BounceExtension(db=db, user_model=User, user_lookup=lookup)
    )
    testapp = TestApp(app)
    post_bounce(testapp, postmark_bounce(email="bob@example.com"))
    assert testapp.get("/", headers={"X-User": "1"}).text == "-"
    assert "bob@example.com" in testapp.get("/", headers={"X-User": "2"}).text
    assert testapp.get("/", headers={"X-User": "2"}).text == "-"


def test_user_lookup_from_config(tmp_path: Path) -> None:
    app = create_app(tmp_path / "app.sqlite3", BOUNCE_USER_LOOKUP=lambda: (2, "bob@example.com"))
    testapp = TestApp(app)
    post_bounce(testapp, postmark_bounce(email="bob@example.com"))
    assert "bob@example.com" in testapp.get("/").text


def test_the_old_user_loader_names_still_work_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="BOUNCE_USER_LOADER is now BOUNCE_USER_LOOKUP"):
        app = create_app(tmp_path / "a.sqlite3", BOUNCE_USER_LOADER=lambda: (2, "bob@example.com"))
    post_bounce(TestApp(app), postmark_bounce(email="bob@example.com"))
    assert "bob@example.com" in TestApp(app).get("/").text
    with pytest.warns(DeprecationWarning, match=r"user_loader=\.\.\.\) is now user_lookup"):
        BounceExtension(db=db, user_model=User, user_loader=lambda: None)
    with pytest.warns(DeprecationWarning, match="UserLoader is now UserLookup"):
        from bounce_middleware.adapters.flask import UserLoader  # noqa: F401


@pytest.fixture
def queries(app: flask.Flask) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    yield statements
    sa.event.remove(engine, "before_cursor_execute", record)


def test_notice_check_is_cheap(testapp: TestApp[Any], queries: list[str]) -> None:
    testapp.get("/")
    assert queries == []  # anonymous: no query at all
    log_in(testapp, "ann@example.com")
    queries.clear()
    testapp.get("/")
    # Flask-Login loads the user, then one indexed look-up for a pending notice.
    assert len(queries) == 2
    assert "bounce_notices" in queries[1]


def test_static_files_skip_the_notice(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.css").write_text("body {}")
    app = create_app(tmp_path / "app.sqlite3")
    app.static_folder = str(tmp_path / "static")
    testapp = TestApp(app)
    log_in(testapp, "ann@example.com")
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    testapp.get("/static/app.css")
    assert "ann@example.com" in testapp.get("/").text


def test_handlers_from_config_run_in_app_context(tmp_path: Path) -> None:
    app = create_app(
        tmp_path / "app.sqlite3",
        BOUNCE_HANDLERS=[record_app_name],
        BOUNCE_NOTIFY_KINDS=["complaint"],
    )
    post_bounce(TestApp(app), postmark_bounce("SpamComplaint", email="ann@example.com"))
    assert app.config["SEEN"] == [BounceKind.COMPLAINT]
    assert [n.kind for n in notices(app)] == ["complaint"]


def record_app_name(bounce: Bounce) -> None:
    flask.current_app.config.setdefault("SEEN", []).append(bounce.kind)


@pytest.mark.parametrize("case", AUTH_CASES, ids=str)
def test_auth(case: AuthCase, testapp: TestApp[Any]) -> None:
    assert_auth_case(testapp, PATH, case, "postmark", "s3cret")


def test_other_paths_pass_through(testapp: TestApp[Any]) -> None:
    assert testapp.get("/").text == "-"
    testapp.get("/missing", status=404)


def test_bad_body_is_400_not_500(testapp: TestApp[Any]) -> None:
    response = testapp.post(
        PATH, "{not json", headers={**HEADERS, "Content-Type": "application/json"}, status=400
    )
    assert response.content_type == "text/plain"
