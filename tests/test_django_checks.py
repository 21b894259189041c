"""System checks, settings translation and ``wrap()`` errors."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.messages import constants as levels
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from bounce_middleware.adapters.django.checks import check_middleware, check_settings
from bounce_middleware.adapters.django.conf import get_state, read_state
from bounce_middleware.adapters.django.store import DjangoStore
from bounce_middleware.adapters.django.wsgi import get_wsgi_application
from bounce_middleware.errors import ConfigurationError
from bounce_middleware.model import BounceKind
from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY
from tests.django_settings import WEBHOOK_PASSWORD

GOOD: dict[str, Any] = {"PATH": "/postmark/bounce", "CREDENTIALS": [f"postmark:{WEBHOOK_PASSWORD}"]}
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


def messages(setting: object) -> list[tuple[str, str]]:
    with override_settings(BOUNCE_MIDDLEWARE=setting):
        return [(message.id or "", message.msg) for message in check_settings()]


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        (None, "credentials is None"),
        ([None], "credential 1 is None — is the environment variable set?"),
        ([f"postmark:{WEBHOOK_PASSWORD}", None], "credential 2 is None"),
        ([("user", "hidden-secret-99")], 'credential 1 is a tuple, not a "user:password" string'),
        ([], "no credentials configured"),
        ("", "no credentials configured"),
        (["no-colon"], "credential 1 must be"),
        (["user:"], "credential 1 must be"),
        (42, "not an int"),
    ],
    ids=repr,
)
def test_e001_malformed_credentials_name_the_problem(credentials: object, problem: str) -> None:
    [(id, message)] = messages({"PATH": "/postmark/bounce", "CREDENTIALS": credentials})
    assert id == "bounce_middleware.E001"
    assert message.startswith('BOUNCE_MIDDLEWARE["CREDENTIALS"] is invalid: ')
    assert problem in message
    assert "hidden-secret-99" not in message  # never the secret


def test_e001_missing_credentials() -> None:
    assert messages({"PATH": "/postmark/bounce"}) == [
        ("bounce_middleware.E001", 'BOUNCE_MIDDLEWARE["CREDENTIALS"] is missing.')
    ]


@pytest.mark.parametrize("credentials", [None, [None], [("user", "pw")]], ids=repr)
def test_manage_py_check_reports_instead_of_crashing(credentials: object) -> None:
    with (
        override_settings(BOUNCE_MIDDLEWARE={**GOOD, "CREDENTIALS": credentials}),
        pytest.raises(SystemCheckError, match=r"bounce_middleware\.E001"),
    ):
        call_command("check")


@pytest.mark.parametrize(
    ("credentials", "warned"),
    [
        (["postmark:s3cret"], ["credential 1 (user 'postmark') uses a password published"]),
        (["a:" + "x" * 15], ["credential 1 (user 'a') has a password shorter than 16"]),
        (
            [f"new:{WEBHOOK_PASSWORD}", "old:s3cret", "x:tiny"],
            ["credential 2 (user 'old') uses", "credential 3 (user 'x') has a password shorter"],
        ),
        ([f"postmark:{WEBHOOK_PASSWORD}", "b:" + "y" * 16], []),
    ],
)
def test_w004_one_warning_per_weak_credential(credentials: list[str], warned: list[str]) -> None:
    found = messages({**GOOD, "CREDENTIALS": credentials})
    assert [id for id, _ in found] == ["bounce_middleware.W004"] * len(warned)
    for (_, message), start in zip(found, warned, strict=True):
        assert message.startswith(f'BOUNCE_MIDDLEWARE["CREDENTIALS"]: {start}')
        assert not [c for c in credentials if c.partition(":")[2] in message]  # no secret


def test_w004_reaches_manage_py_check() -> None:
    out = StringIO()
    with override_settings(BOUNCE_MIDDLEWARE={**GOOD, "CREDENTIALS": ["postmark:s3cret"]}):
        call_command("check", stdout=out, stderr=out)
    assert "bounce_middleware.W004" in out.getvalue()


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
        {**GOOD, "NOTICE_CATEGORY": "loud"},
        {"CREDENTIALS": [f"postmark:{WEBHOOK_PASSWORD}"]},
    ],
    ids=[
        "missing",
        "not-a-dict",
        "path",
        "unknown-key",
        "number",
        "kind",
        "store",
        "category",
        "no-path",
    ],  # fmt: skip
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
    assert message.msg.startswith("BOUNCE_MIDDLEWARE[\"PATH\"] '/account/' is also served")
    assert "'account'" in message.msg


def test_e004_every_route_path_served_by_the_urlconf() -> None:
    routes = {"/account/": "postmark", "/hooks/sendgrid": "sendgrid", "/login/": "sendgrid"}
    found = messages({**ROUTES, "ROUTES": routes})
    assert [id for id, _ in found] == ["bounce_middleware.E004"] * 2
    assert found[0][1].startswith(
        "BOUNCE_MIDDLEWARE[\"ROUTES\"] path '/account/' is also served by the view 'account'"
    )
    assert found[1][1].startswith("BOUNCE_MIDDLEWARE[\"ROUTES\"] path '/login/'")


def test_e004_checks_the_path_of_a_route_that_failed_too() -> None:
    found = messages({"ROUTES": {"/account/": "sendgrid"}, "SENDGRID": {}})
    assert [id for id, _ in found] == ["bounce_middleware.E001", "bounce_middleware.E004"]


# --- ROUTES: each provider's own settings (issue 12) -------------------------------------------

ROUTES: dict[str, Any] = {
    "ROUTES": {"/hooks/postmark": "postmark", "/hooks/sendgrid": "sendgrid"},
    "POSTMARK": {"CREDENTIALS": [f"postmark:{WEBHOOK_PASSWORD}"]},
    "SENDGRID": {"PUBLIC_KEY": TEST_PUBLIC_KEY},
}


def test_two_routes_pass_every_check() -> None:
    with override_settings(BOUNCE_MIDDLEWARE=ROUTES):
        assert [
            m for m in checks.run_checks() if m.id and m.id.startswith("bounce_middleware")
        ] == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"SENDGRID": {}}, "SendGrid: no public_key"),
        ({"SENDGRID": {"PUBLIC_KEY": "not-a-key"}}, "SendGrid public key 1 is not the base64 key"),
        ({"SENDGRID": {"PUBLIC_KEY": None}}, 'BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIC_KEY"] is None'),
        (
            {"SENDGRID": {"PUBLIK_KEY": "x"}},
            'unknown setting BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIK_KEY"]',
        ),
    ],
)
def test_e001_a_route_provider_without_its_secret(changes: dict[str, Any], problem: str) -> None:
    [(id, message)] = messages({**ROUTES, **changes})
    assert id == "bounce_middleware.E001"
    assert message.startswith("BOUNCE_MIDDLEWARE[\"ROUTES\"] '/hooks/sendgrid': ")
    assert problem in message
    assert 'BOUNCE_MIDDLEWARE["SENDGRID"]["PUBLIC_KEY"]' in message


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        (None, "is None — is the environment variable"),
        ([f"postmark:{WEBHOOK_PASSWORD}", ("user", "hidden-secret-99")], "credential 2 is a tuple"),
        (["postmark"], "credential 1 must be"),
        ([], "no credentials configured"),
    ],
    ids=repr,
)
def test_e001_route_credentials_name_the_problem(credentials: object, problem: str) -> None:
    [(id, message)] = messages({**ROUTES, "POSTMARK": {"CREDENTIALS": credentials}})
    assert id == "bounce_middleware.E001"
    assert 'BOUNCE_MIDDLEWARE["POSTMARK"]["CREDENTIALS"]' in message
    assert problem in message
    assert "hidden-secret-99" not in message and WEBHOOK_PASSWORD not in message


def test_e001_once_for_a_provider_on_two_paths() -> None:
    found = messages(
        {
            "ROUTES": {"/a": "mailgun", "/b": "mailgun", "/c": "postmark"},
            "POSTMARK": ROUTES["POSTMARK"],
        }
    )
    assert found == [
        (
            "bounce_middleware.E001",
            "BOUNCE_MIDDLEWARE[\"ROUTES\"] '/a' and '/b': the mailgun route needs setting "
            'BOUNCE_MIDDLEWARE["MAILGUN"]["SIGNING_KEY"]',
        )
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [("MAX_BODY_SIZE", 0), ("RETRY_AFTER", -1), ("LEASE_SECONDS", "0"), ("LEASE_SECONDS", "inf")],
)
def test_e002_numbers_out_of_range_name_the_key(key: str, value: object) -> None:
    [(id, message)] = messages({**ROUTES, key: value})
    assert id == "bounce_middleware.E002"
    assert message.startswith(f'setting BOUNCE_MIDDLEWARE["{key}"] is invalid: expected ')


def test_manage_py_check_reports_a_route_without_its_secret() -> None:
    with (
        override_settings(BOUNCE_MIDDLEWARE={**ROUTES, "SENDGRID": {}}),
        pytest.raises(SystemCheckError, match=r"bounce_middleware\.E001"),
    ):
        call_command("check")


@pytest.mark.parametrize(
    ("changes", "warned"),
    [
        (
            {"POSTMARK": {"CREDENTIALS": ["postmark:s3cret"]}},
            'BOUNCE_MIDDLEWARE["POSTMARK"]["CREDENTIALS"]: credential 1 (user \'postmark\') '
            "uses a password published",
        ),
        (
            # Named as written: the provider's dict keeps the user's spelling.
            {"SENDGRID": {"PUBLIC_KEY": TEST_PUBLIC_KEY, "credentials": "sg:tiny"}},
            'BOUNCE_MIDDLEWARE["SENDGRID"]["credentials"]: credential 1 (user \'sg\') '
            "has a password shorter",
        ),
    ],
)
def test_w004_weak_credentials_of_a_route(changes: dict[str, Any], warned: str) -> None:
    [(id, message)] = messages({**ROUTES, **changes})
    assert id == "bounce_middleware.W004"
    assert message.startswith(warned)
    assert "s3cret" not in message and "tiny" not in message


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"ROUTES": {"/a": "postmarkk"}}, "is invalid: unknown provider 'postmarkk'"),
        ({"ROUTES": {"hooks": "postmark"}}, "a route's path must start with '/'"),
        ({"ROUTES": "/a"}, 'BOUNCE_MIDDLEWARE["ROUTES"] is invalid: expected lines'),
        ({"PATH": "/b"}, 'BOUNCE_MIDDLEWARE["PATH"] is for one Postmark route without'),
        (
            {"MAILGUN": {"SIGNING_KEY": "k"}},
            'BOUNCE_MIDDLEWARE["MAILGUN"]["SIGNING_KEY"] is for provider mailgun, but no route',
        ),
        ({"COLOUR": "blue"}, 'unknown setting BOUNCE_MIDDLEWARE["COLOUR"]'),
    ],
)
def test_e002_malformed_routes(changes: dict[str, Any], problem: str) -> None:
    [(id, message)] = messages({**ROUTES, **changes})
    assert id == "bounce_middleware.E002"
    assert problem in message


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


def test_read_state_defaults() -> None:
    state = read_state(GOOD)
    assert state.notify_kinds == {BounceKind.HARD}
    assert (state.notice_message, state.account_url) == (None, None)
    assert (state.notice_category, state.notice_level) == ("warning", levels.WARNING)
    assert isinstance(state.middleware["store"], DjangoStore)
    [handler] = state.middleware["handlers"]
    assert handler.name == "bounce_middleware.adapters.django.handlers.notify_users"
    assert handler.transactional


def test_read_state_store_none_and_lowercase_keys() -> None:
    state = read_state({"path": "/b", "credentials": "a:b c:d", "store": None})
    assert "store" not in state.middleware
    assert state.middleware["credentials"] == ["a:b", "c:d"]


@pytest.mark.parametrize(("name", "level"), [("info", levels.INFO), (" Error ", levels.ERROR)])
def test_notice_category_names_a_message_level(name: str, level: int) -> None:
    assert read_state({**GOOD, "NOTICE_CATEGORY": name}).notice_level == level


@pytest.mark.parametrize(
    ("setting", "spelled"),
    [
        ({"PATH": "/b"}, 'BOUNCE_MIDDLEWARE["CREDENTIALS"]'),
        ({**GOOD, "MAX_BODY_SIZE": "lots"}, 'BOUNCE_MIDDLEWARE["MAX_BODY_SIZE"]'),
        ({**GOOD, "notice_category": "loud"}, 'BOUNCE_MIDDLEWARE["NOTICE_CATEGORY"]'),
        ({**GOOD, "COLOUR": "blue"}, 'BOUNCE_MIDDLEWARE["COLOUR"]'),
    ],
)
def test_read_state_error_names_the_django_key(setting: dict[str, Any], spelled: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        read_state(setting)
    assert spelled in str(raised.value)
    assert "bounce." not in str(raised.value)


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


def test_state_is_read_once() -> None:
    assert get_state() is get_state()


def test_the_package_exports_what_users_call() -> None:
    from bounce_middleware.adapters import django as adapter
    from bounce_middleware.adapters.django.handlers import notify_users

    assert adapter.notify_users is notify_users
    assert all(getattr(adapter, name) is not None for name in adapter.__all__)
    with pytest.raises(AttributeError):
        adapter.sql  # noqa: B018 - the hand-built SQL module is gone
