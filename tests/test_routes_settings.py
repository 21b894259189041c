"""Two routes (Postmark and another provider) from each framework's own settings.

Django reads ``BOUNCE_MIDDLEWARE["ROUTES"]`` and a dict per provider
(``"SENDGRID": {"PUBLIC_KEY": ...}``), Flask ``BOUNCE_ROUTES`` and
``BOUNCE_<PROVIDER>_<OPTION>`` (from its config or the environment), Pyramid
``bounce.routes`` lines and ``bounce.<provider>.<option>`` in a real ``.ini``.
Each configuration is served by the real framework app through webtest: both
routes answer, other paths reach the app. Bad route settings are named in the
framework's spelling, never with a secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from pyramid.config import Configurator
from pyramid.paster import get_app
from pyramid.response import Response
from webtest import TestApp

from bounce_middleware import BounceMiddleware, ConfigurationError
from bounce_middleware.adapters.django.models import BounceEvent
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.adapters.flask import BounceExtension
from bounce_middleware.adapters.pyramid import filter_app_factory
from bounce_middleware.providers import AmazonSES, Mailgun, Postmark, SendGrid
from bounce_middleware.samples import amazon_ses, mailgun, sendgrid
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests import settings_handlers
from tests.django_settings import WEBHOOK_PASSWORD

MAILGUN_KEY = "tests-only-mailgun-signing-key"
POSTMARK = f"postmark:{WEBHOOK_PASSWORD}"
POSTMARK_HEADERS = auth_headers("postmark", WEBHOOK_PASSWORD)
REMEMBER = "tests.settings_handlers:remember"


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    settings_handlers.received.clear()
    yield
    settings_handlers.received.clear()


def post_postmark(app: TestApp[Any], email: str) -> Any:
    payload = postmark_bounce(email=email)
    return app.post("/hooks/postmark", json.dumps(payload), headers=POSTMARK_HEADERS, status=200)


def send(app: TestApp[Any], path: str, request: tuple[dict[str, str], bytes], status: int) -> Any:
    """Post a signed sample ``(headers, body)``; the body's bytes are what was signed."""
    headers, body = request
    return app.post(path, body.decode("utf-8"), headers=headers, status=status)


def received() -> list[tuple[str, str]]:
    return [(bounce.provider, bounce.email) for bounce in settings_handlers.received]


def assert_clean(message: str, spelled: str) -> None:
    """The message names ``spelled`` and no secret, nor the core's ``bounce.`` spelling."""
    assert spelled in message
    assert "bounce." not in message
    for secret in (WEBHOOK_PASSWORD, MAILGUN_KEY):
        assert secret not in message


# --- Django ----------------------------------------------------------------------------------

DJANGO: dict[str, Any] = {
    "ROUTES": {"/hooks/postmark": "postmark", "/hooks/sendgrid": "sendgrid"},
    "POSTMARK": {"CREDENTIALS": [POSTMARK]},
    "SENDGRID": {"PUBLIC_KEY": sendgrid.TEST_PUBLIC_KEY},
    "HANDLERS": [REMEMBER],
}


@pytest.mark.django_db(transaction=True)
def test_django_serves_two_routes_from_bounce_middleware() -> None:
    with override_settings(BOUNCE_MIDDLEWARE=DJANGO):
        wrapped = get_wsgi_application()
        app = TestApp(wrapped)
        assert isinstance(wrapped.routes["/hooks/postmark"], Postmark)
        assert isinstance(wrapped.routes["/hooks/sendgrid"], SendGrid)
        post_postmark(app, "ann@example.com")
        event = sendgrid.sendgrid_event("hard", email="bob@example.com")
        headers, body = sendgrid.sign_request([event])
        send(app, "/hooks/sendgrid", (headers, body), 200)
        # Unsigned: the SendGrid route checks its own key, not Postmark's credentials.
        send(app, "/hooks/sendgrid", (POSTMARK_HEADERS, body), 401)
        assert "<form" in app.get("/login/").text  # Django's own view
        app.get("/hooks/mailgun", status=404)  # Django's 404: no route there
    assert received() == [("postmark", "ann@example.com"), ("sendgrid", "bob@example.com")]
    keys = set(BounceEvent.objects.values_list("key", flat=True))
    assert keys == {
        f"postmark:{settings_handlers.received[0].id}",
        f"sendgrid:{event['sg_event_id']}",
    }


@pytest.mark.parametrize(
    ("changes", "spelled"),
    [
        ({"SENDGRID": None}, 'BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIC_KEY"]'),
        ({"SENDGRID": {"PUBLIC_KEY": "not-a-key"}}, 'BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIC_KEY"]'),
        (
            {"SENDGRID": {"PUBLIK_KEY": "x"}},
            'unknown setting BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIK_KEY"]',
        ),
        (
            {"SENDGRID": {"PUBLIC_KEY": sendgrid.TEST_PUBLIC_KEY, "MAX_AGE": "a day"}},
            'BOUNCE_MIDDLEWARE["SENDGRID"]["MAX_AGE"] is invalid',
        ),
        (
            {"POSTMARK": {"CREDENTIALS": [POSTMARK, None]}},
            'BOUNCE_MIDDLEWARE["POSTMARK"]["CREDENTIALS"] is invalid: credential 2 is None',
        ),
        ({"POSTMARK": POSTMARK}, 'BOUNCE_MIDDLEWARE["POSTMARK"] must map'),
        (
            {"ROUTES": {"/hooks/mailgun": "mailgun"}, "POSTMARK": None, "SENDGRID": None},
            'the mailgun route needs setting BOUNCE_MIDDLEWARE["MAILGUN"]["SIGNING_KEY"]',
        ),
        (
            {"MAILGUN": {"SIGNING_KEY": MAILGUN_KEY}},
            'BOUNCE_MIDDLEWARE["MAILGUN"]["SIGNING_KEY"] is for provider mailgun, but no route '
            'uses it; add it to BOUNCE_MIDDLEWARE["ROUTES"]',
        ),
        ({"ROUTES": {"hooks/postmark": "postmark"}}, 'BOUNCE_MIDDLEWARE["ROUTES"] is invalid'),
        (
            {"PATH": "/hooks/postmark"},
            'BOUNCE_MIDDLEWARE["PATH"] is for one Postmark route without '
            'BOUNCE_MIDDLEWARE["ROUTES"]',
        ),
    ],
)
def test_django_names_bad_route_settings(changes: dict[str, Any], spelled: str) -> None:
    setting = {**DJANGO, **changes}
    setting = {key: value for key, value in setting.items() if value is not None}
    with (
        override_settings(BOUNCE_MIDDLEWARE=setting),
        pytest.raises(ImproperlyConfigured) as info,
    ):
        get_wsgi_application()
    assert_clean(str(info.value), spelled)


# --- Flask -----------------------------------------------------------------------------------


def flask_app(config: dict[str, Any], *, environ: bool = False) -> flask.Flask:
    """A Flask app whose ``BOUNCE_*`` keys come from ``config`` (and the environment)."""
    app = flask.Flask("routes")
    app.config.update({"BOUNCE_HANDLERS": REMEMBER, "BOUNCE_STORE": "memory://", **config})
    if environ:
        app.config.from_prefixed_env()
    BounceExtension(app)

    @app.get("/")
    def home() -> str:
        return "hello from flask"

    return app


FLASK: dict[str, Any] = {
    "BOUNCE_ROUTES": {"/hooks/postmark": "postmark", "/hooks/mailgun": "mailgun"},
    "BOUNCE_POSTMARK_CREDENTIALS": POSTMARK,
    "BOUNCE_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
}


def assert_flask_serves_both(app: flask.Flask) -> None:
    middleware = BounceExtension.state(app).middleware
    assert isinstance(middleware.routes["/hooks/mailgun"], Mailgun)
    client = TestApp(app)
    post_postmark(client, "ann@example.com")
    signed = mailgun.sign_request(
        mailgun.mailgun_event("hard", email="bob@example.com"), signing_key=MAILGUN_KEY
    )
    send(client, "/hooks/mailgun", signed, 200)
    send(client, "/hooks/mailgun", signed, 401)  # the same token again: a replay
    assert client.get("/").text == "hello from flask"
    client.get("/hooks/sendgrid", status=404)  # Flask's own 404
    assert received() == [("postmark", "ann@example.com"), ("mailgun", "bob@example.com")]


def test_flask_serves_two_routes_from_its_config() -> None:
    assert_flask_serves_both(flask_app(FLASK))


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_flask_serves_two_routes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, nested: bool
) -> None:
    monkeypatch.setenv("FLASK_BOUNCE_ROUTES", json.dumps(FLASK["BOUNCE_ROUTES"]))
    monkeypatch.setenv("FLASK_BOUNCE_POSTMARK_CREDENTIALS", POSTMARK)
    # Flask's "__" nests: FLASK_BOUNCE_MAILGUN__SIGNING_KEY is BOUNCE_MAILGUN["SIGNING_KEY"].
    monkeypatch.setenv(f"FLASK_BOUNCE_MAILGUN{'__' if nested else '_'}SIGNING_KEY", MAILGUN_KEY)
    assert_flask_serves_both(flask_app({}, environ=True))


@pytest.mark.parametrize(
    ("changes", "spelled"),
    [
        (
            {"BOUNCE_MAILGUN_SIGNING_KEY": None},
            "the mailgun route needs setting 'BOUNCE_MAILGUN_SIGNING_KEY'",
        ),
        (
            {"BOUNCE_MAILGUN_SIGNING_KEY": [MAILGUN_KEY, ""]},
            "(its settings: 'BOUNCE_MAILGUN_SIGNING_KEY', 'BOUNCE_MAILGUN_CREDENTIALS'",
        ),
        ({"BOUNCE_MAILGUN_MAX_AGE": "soon"}, "setting 'BOUNCE_MAILGUN_MAX_AGE' is invalid"),
        (
            {"BOUNCE_MAILGUN_SIGNINGKEY": MAILGUN_KEY},
            "unknown setting 'BOUNCE_MAILGUN_SIGNINGKEY' for provider mailgun",
        ),
        (
            {"BOUNCE_MAILGUN": {"SIGNING_KEY": MAILGUN_KEY}},
            """settings 'BOUNCE_MAILGUN_SIGNING_KEY' and BOUNCE_MAILGUN["SIGNING_KEY"] both set""",
        ),
        (
            {"BOUNCE_POSTMARK_CREDENTIALS": "postmark"},
            "setting 'BOUNCE_POSTMARK_CREDENTIALS' is invalid: credential 1 must be",
        ),
        (
            {"BOUNCE_ROUTES": "/hooks/postmark"},
            "setting 'BOUNCE_ROUTES' is invalid: expected lines of 'path provider'",
        ),
        ({"BOUNCE_CREDENTIALS": POSTMARK}, "with routes, give 'BOUNCE_POSTMARK_CREDENTIALS'"),
    ],
)
def test_flask_names_bad_route_settings(changes: dict[str, Any], spelled: str) -> None:
    config = {**FLASK, **changes}
    config = {key: value for key, value in config.items() if value is not None}
    with pytest.raises(ConfigurationError) as info:
        flask_app(config)
    assert_clean(str(info.value), spelled)


# --- Pyramid ---------------------------------------------------------------------------------

INI = """\
[app:site]
use = call:tests.test_routes_settings:pyramid_site
bounce.routes =
    /hooks/postmark postmark
    /hooks/ses amazon_ses
bounce.postmark.credentials = {postmark}
bounce.amazon_ses.topic_arns = {topic}
bounce.amazon_ses.fetch = {fetch}
bounce.amazon_ses.auto_confirm = false
bounce.handlers = {handler}
bounce.store = memory://
{extra}

[filter:bounce]
use = egg:bounce-middleware#bounce

[pipeline:main]
pipeline =
    bounce
    site
"""


def pyramid_site(global_config: Any, **settings: str) -> Any:
    """The ``[app:site]`` of :data:`INI`: a Pyramid app reading ``bounce.*`` by include."""
    config = Configurator(settings=settings)
    config.include("bounce_middleware.adapters.pyramid")
    config.add_route("home", "/")
    config.add_view(lambda request: Response("hello from pyramid"), route_name="home")
    return config.make_wsgi_app()


def write_ini(tmp_path: Path, extra: str = "", **changes: str) -> Path:
    values = {
        "postmark": POSTMARK,
        "topic": amazon_ses.TEST_SNS_TOPIC_ARN,
        "handler": REMEMBER,
        "fetch": "bounce_middleware.samples.amazon_ses:test_fetcher",
        "extra": extra,
        **changes,
    }
    ini = tmp_path / "routes.ini"
    ini.write_text(INI.format(**values), "utf-8")
    return ini


def test_pyramid_serves_two_routes_from_an_ini_file(tmp_path: Path) -> None:
    wrapped = get_app(str(write_ini(tmp_path)), "main")
    assert isinstance(wrapped, BounceMiddleware)
    assert list(wrapped.routes) == ["/hooks/postmark", "/hooks/ses"]
    ses = wrapped.routes["/hooks/ses"]
    assert isinstance(ses, AmazonSES)
    assert (ses.fetch, ses.auto_confirm) == (amazon_ses.test_fetcher, False)
    app = TestApp(wrapped)
    post_postmark(app, "ann@example.com")
    send(
        app,
        "/hooks/ses",
        amazon_ses.sign_request(amazon_ses.ses_bounce(email="bob@example.com")),
        200,
    )
    foreign = amazon_ses.sign_request(
        amazon_ses.ses_bounce(email="eve@example.com"),
        topic_arn="arn:aws:sns:us-east-1:123456789012:someone-else",
    )
    send(app, "/hooks/ses", foreign, 401)
    assert app.get("/").text == "hello from pyramid"
    app.get("/hooks/sendgrid", status=404)  # Pyramid's own 404
    assert received() == [("postmark", "ann@example.com"), ("amazon_ses", "bob@example.com")]


@pytest.mark.parametrize(
    ("changes", "extra", "spelled"),
    [
        ({"topic": ""}, "", "'bounce.amazon_ses.topic_arns'"),
        (
            {"fetch": "no_such_module.fetch"},
            "",
            "setting 'bounce.amazon_ses.fetch' is invalid: cannot import",
        ),
        (
            {},
            "bounce.amazon_ses.cache_seconds = an hour",
            "setting 'bounce.amazon_ses.cache_seconds' is invalid",
        ),
        (
            {},
            "bounce.amazon_ses.topic = x",
            "unknown setting 'bounce.amazon_ses.topic' for provider amazon_ses; "
            "its settings: 'bounce.amazon_ses.topic_arns',",
        ),
        (
            {"postmark": "postmark"},
            "",
            "setting 'bounce.postmark.credentials' is invalid: credential 1 must be",
        ),
        (
            {},
            f"bounce.mailgun.signing_key = {MAILGUN_KEY}",
            "setting 'bounce.mailgun.signing_key' is for provider mailgun, but no route uses it",
        ),
        ({}, "bounce.credentials = x:y", "with routes, give 'bounce.postmark.credentials'"),
    ],
)
def test_pyramid_names_bad_route_settings(
    tmp_path: Path, changes: dict[str, str], extra: str, spelled: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        get_app(str(write_ini(tmp_path, extra, **changes)), "main")
    message = str(info.value)
    assert spelled in message
    for secret in (WEBHOOK_PASSWORD, MAILGUN_KEY):
        assert secret not in message


def plain_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain wsgi"]


def test_the_paste_filter_reads_routes_for_any_wsgi_app() -> None:
    wrapped = filter_app_factory(
        plain_app,
        {},
        **{
            "bounce.routes": "/hooks/postmark postmark\n/hooks/sendgrid sendgrid",
            "bounce.postmark.credentials": POSTMARK,
            "bounce.sendgrid.public_key": sendgrid.TEST_PUBLIC_KEY,
            "bounce.handlers": REMEMBER,
        },
    )
    app = TestApp(wrapped)
    post_postmark(app, "ann@example.com")
    signed = sendgrid.sign_request([sendgrid.sendgrid_event(email="bob@example.com")])
    send(app, "/hooks/sendgrid", signed, 200)
    assert app.get("/anything").text == "plain wsgi"
    assert received() == [("postmark", "ann@example.com"), ("sendgrid", "bob@example.com")]
