"""The Pyramid adapter against a real Pyramid app (pyramid_tm, zope.sqlalchemy) on SQLite."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
import transaction
import zope.sqlalchemy
from pyramid.authentication import SessionAuthenticationHelper
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationConflictError, ConfigurationExecutionError
from pyramid.response import Response
from pyramid.security import remember
from pyramid.session import SignedCookieSessionFactory
from sqlalchemy import orm
from webtest import TestApp

from bounce_middleware import Bounce, BounceMiddleware, ConfigurationError, MemoryStore
from bounce_middleware.adapters.pyramid import (
    REGISTRY_KEY,
    BounceState,
    filter_app_factory,
    transaction_scope,
    wrap,
)
from bounce_middleware.adapters.sqlalchemy import Notice, SQLAlchemyStore, create_all
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests.auth_cases import AUTH_CASES, AuthCase, assert_auth_case

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PATH = "/postmark/bounce"
HEADERS = auth_headers("postmark", "s3cret")


class Base(orm.DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    email: orm.Mapped[str] = orm.mapped_column(sa.String(320))


class Audit(Base):
    """Written by a test handler, to show its writes roll back with it."""

    __tablename__ = "audit"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    email: orm.Mapped[str] = orm.mapped_column(sa.String(320))


class Policy:
    """A session-based Pyramid 2 security policy whose identity is the ``User``."""

    helper = SessionAuthenticationHelper()

    def identity(self, request: Any) -> User | None:
        userid = self.helper.authenticated_userid(request)
        return None if userid is None else request.dbsession.get(User, int(userid))

    def authenticated_userid(self, request: Any) -> str | None:
        return None if request.identity is None else str(request.identity.id)

    def permits(self, request: Any, context: Any, permission: str) -> bool:
        return True

    def remember(self, request: Any, userid: str, **kw: Any) -> Any:
        return self.helper.remember(request, userid, **kw)

    def forget(self, request: Any, **kw: Any) -> Any:
        return self.helper.forget(request, **kw)


def dbsession(request: Any) -> orm.Session:
    session: orm.Session = request.registry["dbsession_factory"]()
    zope.sqlalchemy.register(session, transaction_manager=request.tm)
    return session


def flashes(request: Any) -> Response:
    """The page a user sees: the flashed messages, one a line."""
    return Response(
        "\n".join(request.session.pop_flash()) or "-", content_type="text/plain", charset="utf-8"
    )


def login(request: Any) -> Response:
    headers = remember(request, request.matchdict["id"])
    response = Response("logged in", content_type="text/plain", charset="utf-8")
    response.headers.extend(headers)
    return response


def change_email(request: Any) -> Response:
    request.identity.email = request.POST["email"]
    return Response("changed", content_type="text/plain", charset="utf-8")


def make_config(db: Path, **settings: str) -> Configurator:
    """The app: cookiecutter-style sessions, the adapter included, three views."""
    config = Configurator(
        settings={
            "tm.manager_hook": "pyramid_tm.explicit_manager",
            "bounce.path": PATH,
            "bounce.credentials": "postmark:s3cret",
            "bounce.user_model": "tests.test_pyramid:User",
            **settings,
        }
    )
    config.set_session_factory(SignedCookieSessionFactory("not-a-secret-in-tests"))
    config.set_security_policy(Policy())
    config.include("pyramid_tm")
    engine = sa.create_engine(f"sqlite:///{db}")
    config.registry["dbsession_factory"] = orm.sessionmaker(bind=engine)
    config.add_request_method(dbsession, reify=True)
    config.include("bounce_middleware.adapters.pyramid")
    config.add_route("home", "/")
    config.add_route("login", "/login/{id}")
    config.add_route("email", "/email")
    config.add_view(flashes, route_name="home")
    config.add_view(login, route_name="login")
    config.add_view(change_email, route_name="email", request_method="POST")
    return config


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    db = tmp_path / "app.sqlite3"
    engine = sa.create_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    create_all(engine)
    with orm.Session(engine) as session, session.begin():
        session.add_all([User(id=1, email="ann@example.com"), User(id=2, email="bob@example.com")])
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: sa.Engine) -> Path:
    assert engine.url.database is not None
    return Path(engine.url.database)


@pytest.fixture
def middleware(db: Path) -> BounceMiddleware:
    wrapped: BounceMiddleware = wrap(make_config(db))
    return wrapped


@pytest.fixture
def testapp(middleware: BounceMiddleware) -> TestApp:
    return TestApp(middleware)


def notices(engine: sa.Engine) -> list[tuple[str, str, bool]]:
    with orm.Session(engine) as session:
        return [
            (n.user_id, n.email, n.shown_at is not None)
            for n in session.scalars(sa.select(Notice).order_by(Notice.id))
        ]


def post_bounce(testapp: TestApp[Any], payload: dict[str, Any], status: int = 200) -> Any:
    return testapp.post(
        PATH,
        json.dumps(payload),
        headers={**HEADERS, "Content-Type": "application/json"},
        status=status,
    )


# --- the whole flow over HTTP -------------------------------------------------------------


def test_bounce_then_notice_flashed_exactly_once(testapp: TestApp, engine: sa.Engine) -> None:
    assert testapp.get("/").text == "-"  # anonymous: nothing
    post_bounce(testapp, postmark_bounce(email="ANN@Example.com"))
    assert notices(engine) == [("1", "ANN@Example.com", False)]

    testapp.get("/login/1")
    page = testapp.get("/").text
    assert page.startswith("We could not deliver e-mail to ANN@Example.com: The server was")
    assert notices(engine) == [("1", "ANN@Example.com", True)]
    assert testapp.get("/").text == "-"
    assert testapp.get("/").text == "-"


def test_no_notice_after_the_address_changed(testapp: TestApp, engine: sa.Engine) -> None:
    testapp.get("/login/1")
    testapp.get("/")
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    # The next request is the form changing the address: no notice on a POST...
    assert testapp.post("/email", {"email": "ann@new.example.com"}).text == "changed"
    # ...and none on the page after, since the address that bounced is gone.
    assert testapp.get("/").text == "-"
    assert notices(engine) == [("1", "ann@example.com", False)]


def test_the_notices_and_the_completion_commit_in_one_transaction(
    middleware: BounceMiddleware, testapp: TestApp, engine: sa.Engine
) -> None:
    """The user store is transactional: through `transaction` and zope.sqlalchemy, its
    notices and its completion commit together, exactly once."""
    app_engine = middleware.app.registry["dbsession_factory"].kw["bind"]  # type: ignore[attr-defined]
    commits: list[object] = []
    sa.event.listen(app_engine, "commit", commits.append)
    post_bounce(testapp, postmark_bounce(email="bob@example.com"))
    assert len(commits) == 2  # the claim; the notices with the completion
    assert notices(engine) == [("2", "bob@example.com", False)]
    store = middleware.store
    assert store is not None
    (record,) = store.records()
    assert record.finished
    assert record.completed == {"bounce_middleware.adapters.sqlalchemy.UserBounceHandler"}


def test_addresses_match_with_unicode_folding(testapp: TestApp, engine: sa.Engine) -> None:
    with orm.Session(engine) as session, session.begin():
        session.add(User(id=3, email="Émile@example.com"))
    post_bounce(testapp, postmark_bounce(email="émile@example.com"))
    assert notices(engine) == [("3", "émile@example.com", False)]
    testapp.get("/login/3")
    assert testapp.get("/").text.startswith("We could not deliver e-mail to émile@example.com")


def test_other_users_and_unknown_addresses_see_nothing(testapp: TestApp, engine: sa.Engine) -> None:
    post_bounce(testapp, postmark_bounce(email="nobody@example.com"))
    post_bounce(testapp, postmark_bounce(email="ann@example.com"))
    testapp.get("/login/2")
    assert testapp.get("/").text == "-"
    assert notices(engine) == [("1", "ann@example.com", False)]


def test_soft_bounces_do_not_notify_by_default(testapp: TestApp, engine: sa.Engine) -> None:
    post_bounce(testapp, postmark_bounce("SoftBounce", email="ann@example.com"))
    assert notices(engine) == []


def test_notice_settings(db: Path, engine: sa.Engine) -> None:
    middleware = wrap(
        make_config(
            db,
            **{
                "bounce.notify_kinds": "hard soft",
                "bounce.notice_message": "{type} for {email}",
                "bounce.notice_category": "bounce",
            },
        )
    )
    testapp = TestApp(middleware)
    post_bounce(testapp, postmark_bounce("SoftBounce", email="ann@example.com"))
    testapp.get("/login/1")
    assert testapp.get("/").text == "-"  # not in the default queue...
    assert notices(engine) == [("1", "ann@example.com", True)]  # ...but shown


def test_anonymous_requests_do_not_touch_the_database(
    middleware: BounceMiddleware, testapp: TestApp
) -> None:
    statements: list[str] = []
    app_engine = middleware.app.registry["dbsession_factory"].kw["bind"]  # type: ignore[attr-defined]
    sa.event.listen(app_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    testapp.get("/")
    testapp.get("/")
    assert statements == []
    testapp.get("/login/1")
    testapp.get("/")
    assert any("bounce_notices" in s for s in statements)


#: For ``bounce.session_factory`` by dotted name; bound by the test using it.
SESSIONS = orm.sessionmaker()


def header_user(request: Any) -> tuple[object, str] | None:
    """A ``bounce.user_lookup``: an app without a security policy, the user in headers."""
    if "X-User" not in request.headers:
        return None
    return request.headers["X-User"], request.headers["X-Email"]


def test_session_factory_and_user_lookup_settings(engine: sa.Engine) -> None:
    SESSIONS.configure(bind=engine)
    config = Configurator(
        settings={
            "bounce.path": PATH,
            "bounce.credentials": "postmark:s3cret",
            "bounce.user_model": "tests.test_pyramid:User",
            "bounce.session_factory": "tests.test_pyramid:SESSIONS",
            "bounce.user_lookup": "tests.test_pyramid:header_user",
        }
    )
    config.set_session_factory(SignedCookieSessionFactory("not-a-secret-in-tests"))
    config.include("bounce_middleware.adapters.pyramid")
    config.add_route("home", "/")
    config.add_view(flashes, route_name="home")
    testapp = TestApp(wrap(config))
    post_bounce(testapp, postmark_bounce(email="bob@example.com"))
    assert testapp.get("/").text == "-"
    user = {"X-User": "2", "X-Email": "BOB@example.com"}
    assert testapp.get("/", headers=user).text.startswith("We could not deliver")
    assert testapp.get("/", headers=user).text == "-"
    assert notices(engine) == [("2", "bob@example.com", True)]


# --- transactions: a failure writes nothing -----------------------------------------------


def test_handler_failure_rolls_back_and_the_retry_completes(
    middleware: BounceMiddleware, testapp: TestApp, engine: sa.Engine
) -> None:
    with orm.Session(engine) as session, session.begin():
        session.get_one(User, 2).email = "ANN@example.com"  # two accounts, one address
    with engine.begin() as connection:
        # A real database failure on the second user's row, after the first was written.
        connection.exec_driver_sql(
            "CREATE TRIGGER fail_second BEFORE INSERT ON bounce_notices "
            "WHEN NEW.user_id = '2' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    payload = postmark_bounce(email="ann@example.com")

    assert "handler failed" in post_bounce(testapp, payload, status=500).text
    assert notices(engine) == []
    store = middleware.store
    assert isinstance(store, SQLAlchemyStore)
    (record,) = store.records()
    assert not record.finished and record.completed == frozenset()

    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER fail_second")
    assert post_bounce(testapp, payload).text == "accepted\n"
    assert notices(engine) == [("1", "ann@example.com", False), ("2", "ann@example.com", False)]
    assert store.records()[0].finished


def audit_then_fail(factory: orm.sessionmaker[orm.Session]) -> Callable[[Bounce], None]:
    """A handler writing through transaction_scope, then failing: its write must not stay."""

    def handler(bounce: Bounce) -> None:
        with transaction_scope(factory) as session:
            session.add(Audit(email=bounce.email))
            session.flush()
            raise RuntimeError("the mail server is on fire")

    return handler


def test_directive_handler_failure_rolls_back_its_writes(db: Path, engine: sa.Engine) -> None:
    config = make_config(db)
    handler = audit_then_fail(orm.sessionmaker(bind=engine))
    config.add_bounce_handler(handler, kinds="hard soft", name="audit")
    middleware = wrap(config)
    testapp = TestApp(middleware)
    post_bounce(testapp, postmark_bounce(email="ann@example.com"), status=500)
    with orm.Session(engine) as session:
        assert session.scalars(sa.select(Audit)).all() == []
    # The user store completed; only the failing handler runs on the retry.
    assert notices(engine) == [("1", "ann@example.com", False)]
    names = [h.name for h in middleware.handlers]
    assert names == [
        "bounce_middleware.adapters.sqlalchemy.UserBounceHandler",
        "audit",
    ]
    assert middleware.store is not None
    (record,) = middleware.store.records()
    assert record.completed == {"bounce_middleware.adapters.sqlalchemy.UserBounceHandler"}


def test_transaction_scope_commits_on_success(engine: sa.Engine) -> None:
    factory = orm.sessionmaker(bind=engine)
    with transaction_scope(factory) as session:
        session.add(Audit(email="kept@example.com"))
    with transaction_scope(factory, transaction.TransactionManager(explicit=True)) as session:
        assert session.scalars(sa.select(Audit.email)).all() == ["kept@example.com"]


def test_duplicate_delivery_runs_nothing_twice(testapp: TestApp, engine: sa.Engine) -> None:
    payload = postmark_bounce(email="ann@example.com")
    assert post_bounce(testapp, payload).text == "accepted\n"
    assert post_bounce(testapp, payload).text == "already processed\n"
    assert notices(engine) == [("1", "ann@example.com", False)]


@pytest.mark.parametrize("case", AUTH_CASES, ids=str)
def test_auth(case: AuthCase, testapp: TestApp) -> None:
    assert_auth_case(testapp, PATH, case, "postmark", "s3cret")


def test_two_apps_in_one_process_keep_their_own_state(
    testapp: TestApp[Any], engine: sa.Engine, tmp_path: Path
) -> None:
    other_db = tmp_path / "other.sqlite3"
    other_engine = sa.create_engine(f"sqlite:///{other_db}")
    Base.metadata.create_all(other_engine)
    create_all(other_engine)
    with orm.Session(other_engine) as session, session.begin():
        session.add(User(id=1, email="ann@example.com"))
    other = TestApp(wrap(make_config(other_db, **{"bounce.path": "/other/bounce"})))
    other.post(
        "/other/bounce",
        json.dumps(postmark_bounce(email="ann@example.com")),
        headers={**HEADERS, "Content-Type": "application/json"},
    )
    testapp.post("/other/bounce", status=404)  # the first app's middleware ignores that path
    assert notices(engine) == []
    assert notices(other_engine) == [("1", "ann@example.com", False)]
    other_engine.dispose()


# --- configuration ------------------------------------------------------------------------


def test_state_lives_in_the_registry(db: Path) -> None:
    router = make_config(db, **{"bounce.max_body_size": "2048"}).make_wsgi_app()
    state = router.registry[REGISTRY_KEY]
    assert isinstance(state, BounceState)
    assert isinstance(state.store, SQLAlchemyStore)
    middleware = wrap(router)  # the built app works as well as the Configurator
    assert middleware.app is router
    assert middleware.max_body_size == 2048
    assert middleware.store is state.store


def test_store_setting(db: Path) -> None:
    middleware = wrap(make_config(db, **{"bounce.store": "memory://"}))
    assert isinstance(middleware.store, MemoryStore)


def test_handlers_from_settings_use_maybe_dotted(db: Path) -> None:
    middleware = wrap(make_config(db, **{"bounce.handlers": "tests.settings_handlers:remember"}))
    assert [h.name for h in middleware.handlers][-1] == "tests.settings_handlers.remember"


def test_directive_names_conflict(db: Path) -> None:
    config = make_config(db)
    config.add_bounce_handler("tests.settings_handlers:remember")
    config.add_bounce_handler("tests.settings_handlers.remember")
    with pytest.raises(ConfigurationConflictError):
        config.commit()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bounce.colour": "red"}, "unknown setting 'bounce.colour'"),
        ({"bounce.credentials": ""}, "no credentials"),
        ({"bounce.user_model": "tests.nowhere:User"}, "setting 'bounce.user_model'"),
        ({"bounce.notify_kinds": "hard squishy"}, "setting 'bounce.notify_kinds'"),
        ({"bounce.notice": "maybe"}, "setting 'bounce.notice'"),
    ],
)
def test_bad_settings_are_named(db: Path, settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        wrap(make_config(db, **settings))


def test_old_setting_names_still_work_with_a_warning(db: Path, engine: sa.Engine) -> None:
    with pytest.warns(DeprecationWarning) as warned:
        config = make_config(
            db,
            **{
                "bounce.notice_queue": "bounce",
                "bounce.notice_user": "tests.test_pyramid:header_user",
            },
        )
    assert sorted(str(w.message) for w in warned) == [
        "bounce.notice_queue is now bounce.notice_category",
        "bounce.notice_user is now bounce.user_lookup",
    ]
    testapp = TestApp(wrap(config))
    post_bounce(testapp, postmark_bounce(email="bob@example.com"))
    testapp.get("/", headers={"X-User": "2", "X-Email": "bob@example.com"})
    assert notices(engine) == [("2", "bob@example.com", True)]  # shown, in queue "bounce"
    with pytest.warns(DeprecationWarning, match="PyramidBounce is now BounceState"):
        from bounce_middleware.adapters.pyramid import PyramidBounce
    assert PyramidBounce is BounceState


def test_user_store_needs_a_session_factory() -> None:
    config = Configurator(
        settings={
            "bounce.path": PATH,
            "bounce.credentials": "postmark:s3cret",
            "bounce.user_model": "tests.test_pyramid:User",
            "bounce.notice": "false",
        }
    )
    config.include("bounce_middleware.adapters.pyramid")
    # Found at commit: Pyramid wraps it with the location of the include.
    with pytest.raises(ConfigurationExecutionError, match="session factory"):
        config.commit()


def test_notice_needs_request_sessions(engine: sa.Engine) -> None:
    config = Configurator(
        settings={
            "bounce.path": PATH,
            "bounce.credentials": "postmark:s3cret",
            "bounce.user_model": "tests.test_pyramid:User",
        }
    )
    config.registry["dbsession_factory"] = orm.sessionmaker(bind=engine)
    config.include("bounce_middleware.adapters.pyramid")
    with pytest.raises(ConfigurationExecutionError, match="set_session_factory"):
        config.commit()


def test_without_user_model_no_store_and_no_notice() -> None:
    config = Configurator(settings={"bounce.path": PATH, "bounce.credentials": "postmark:s3cret"})
    config.include("bounce_middleware.adapters.pyramid")
    config.add_bounce_handler("tests.settings_handlers:remember", name="remember")
    router = config.make_wsgi_app()
    middleware = wrap(router)
    assert middleware.store is None
    assert [h.name for h in middleware.handlers] == ["remember"]
    state = router.registry[REGISTRY_KEY]
    assert state.notice is False and state.user_handler is None


def test_wrap_needs_the_include() -> None:
    with pytest.raises(ConfigurationError, match="config.include"):
        wrap(Configurator())


# --- the PasteDeploy filter factory --------------------------------------------------------


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_filter_reads_its_own_section_around_any_wsgi_app() -> None:
    middleware = filter_app_factory(
        hello,
        {"here": "/srv", "__file__": "/srv/production.ini"},
        **{"bounce.path": "/hooks/postmark", "bounce.credentials": "postmark:s3cret"},
    )
    assert isinstance(middleware, BounceMiddleware)
    testapp = TestApp(middleware)
    assert testapp.get("/").text == "hello"
    testapp.post("/hooks/postmark", json.dumps(postmark_bounce()), headers=HEADERS)


def test_filter_uses_the_pyramid_apps_configuration(db: Path) -> None:
    router = make_config(db).make_wsgi_app()
    middleware = filter_app_factory(router, {})
    assert middleware.store is router.registry[REGISTRY_KEY].store
    assert middleware.app is router


@pytest.mark.parametrize(
    ("app", "local_conf", "message"),
    [
        ("pyramid", {"bounce.path": "/other"}, "keep them in its \\[app:...\\] section"),
        ("hello", {}, "needs bounce.path and bounce.credentials"),
        ("hello", {"path": "/x"}, "bounce.\\* settings only; unknown: path"),
        (
            "hello",
            {"bounce.path": "/x", "bounce.credentials": "a:b", "bounce.user_model": "x"},
            "unknown setting 'bounce.user_model'",
        ),
    ],
)
def test_filter_refuses_ambiguous_configuration(
    db: Path, app: str, local_conf: dict[str, str], message: str
) -> None:
    wrapped = make_config(db).make_wsgi_app() if app == "pyramid" else hello
    with pytest.raises(ConfigurationError, match=message):
        filter_app_factory(wrapped, {}, **local_conf)
