"""System checks, settings translation, ``wrap()`` errors and up-to-date migrations."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from bounce_middleware.adapters.django.checks import check_middleware, check_settings
from bounce_middleware.adapters.django.conf import get_config, read_config
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.errors import ConfigurationError
from bounce_middleware.model import BounceKind

GOOD: dict[str, Any] = {"PATH": "/postmark/bounce", "CREDENTIALS": ["postmark:s3cret"]}
NOTICE = "bounce_middleware.adapters.django.middleware.BounceNoticeMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"


def ids(setting: object) -> list[str]:
    with override_settings(BOUNCE_MIDDLEWARE=setting):
        return [message.id or "" for message in check_settings()]


def test_the_test_settings_pass_every_check() -> None:
    assert [m for m in checks.run_checks() if m.id and m.id.startswith("bounce_middleware")] == []


def test_checks_are_registered_with_django() -> None:
    with override_settings(BOUNCE_MIDDLEWARE={"PATH": "/postmark/bounce"}):
        found = [m.id for m in checks.run_checks()]
    assert "bounce_middleware.E001" in found


@pytest.mark.parametrize("credentials", [None, [], "", ["no-colon"], ["user:"], 42], ids=repr)
def test_e001_missing_or_malformed_credentials(credentials: object) -> None:
    setting = {"PATH": "/postmark/bounce"}
    if credentials is not None:
        setting["CREDENTIALS"] = credentials  # type: ignore[assignment]
    assert ids(setting) == ["bounce_middleware.E001"]


@pytest.mark.parametrize(
    "setting",
    [
        None,
        ["PATH"],
        {**GOOD, "PATH": "no-slash"},
        {**GOOD, "COLOUR": "blue"},
        {**GOOD, "MAX_BODY_SIZE": "lots"},
        {**GOOD, "NOTIFY_KINDS": ["hard", "fatal"]},
        {**GOOD, "STORE": "ftp://nowhere"},
        {"CREDENTIALS": ["postmark:s3cret"]},
    ],
    ids=["missing", "not-a-dict", "path", "unknown-key", "number", "kind", "store", "no-path"],
)
def test_e002_malformed_setting(setting: object) -> None:
    assert ids(setting) == ["bounce_middleware.E002"]


def test_e002_names_the_key_as_the_user_wrote_it() -> None:
    with override_settings(BOUNCE_MIDDLEWARE={**GOOD, "MAX_BODY_SIZE": "lots"}):
        [message] = check_settings()
    assert 'BOUNCE_MIDDLEWARE["MAX_BODY_SIZE"]' in message.msg


@pytest.mark.parametrize(
    "handler", ["tests.no_such_module.handler", "tests.django_app.handlers.nothing", "json"]
)
def test_e003_handler_that_cannot_be_imported_or_called(handler: str) -> None:
    assert ids({**GOOD, "HANDLERS": [handler]}) == ["bounce_middleware.E003"]


def test_e004_path_served_by_the_urlconf() -> None:
    with override_settings(BOUNCE_MIDDLEWARE={**GOOD, "PATH": "/account/"}):
        [message] = check_settings()
    assert message.id == "bounce_middleware.E004"
    assert "'account'" in message.msg


def test_w003_account_url_that_does_not_reverse() -> None:
    assert ids({**GOOD, "ACCOUNT_URL": "no-such-view"}) == ["bounce_middleware.W003"]
    assert ids({**GOOD, "ACCOUNT_URL": "/any/path/"}) == []


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ([SESSIONS, AUTH, MESSAGES, NOTICE], []),
        ([SESSIONS, AUTH, MESSAGES], ["bounce_middleware.W001"]),
        ([SESSIONS, NOTICE, AUTH, MESSAGES], ["bounce_middleware.W002"]),
        ([SESSIONS, AUTH, NOTICE, MESSAGES], ["bounce_middleware.W002"]),
    ],
    ids=["ok", "missing", "before-auth", "before-messages"],
)
def test_w001_w002_notice_middleware(middleware: list[str], expected: list[str]) -> None:
    with override_settings(MIDDLEWARE=middleware):
        assert [m.id for m in check_middleware()] == expected


def test_no_middleware_warning_without_the_notify_handler() -> None:
    setting = {**GOOD, "HANDLERS": ["tests.django_app.handlers.flaky"]}
    with override_settings(BOUNCE_MIDDLEWARE=setting, MIDDLEWARE=[]):
        assert check_middleware() == []


def test_read_config_defaults() -> None:
    config = read_config(GOOD)
    assert config.notify_kinds == {BounceKind.HARD}
    assert (config.notice_message, config.account_url) == (None, None)
    assert isinstance(config.middleware["store"], DjangoStore)
    [handler] = config.middleware["handlers"]
    assert handler.name == "bounce_middleware.adapters.django.handlers.notify_users"


def test_read_config_store_none_and_lowercase_keys() -> None:
    config = read_config({"path": "/b", "credentials": "a:b c:d", "store": None})
    assert "store" not in config.middleware
    assert config.middleware["credentials"] == ["a:b", "c:d"]


def test_read_config_error_names_the_django_key() -> None:
    with pytest.raises(ConfigurationError, match=r'BOUNCE_MIDDLEWARE\["CREDENTIALS"\]'):
        read_config({"PATH": "/b"})


def test_wrap_refuses_bad_settings() -> None:
    with (
        override_settings(BOUNCE_MIDDLEWARE={"PATH": "/b"}),
        pytest.raises(ImproperlyConfigured, match="CREDENTIALS"),
    ):
        get_wsgi_application()


def test_wrap_needs_the_app_installed() -> None:
    installed = [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "tests.django_app",
    ]
    with (
        override_settings(INSTALLED_APPS=installed),
        pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"),
    ):
        get_wsgi_application()


def test_config_is_read_once() -> None:
    assert get_config() is get_config()


@pytest.mark.django_db
def test_migrations_are_up_to_date() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
