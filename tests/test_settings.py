"""The one settings reader every adapter goes through."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest
from webtest import TestApp

from bounce_middleware import BounceKind, BounceMiddleware, ConfigurationError, MemoryStore
from bounce_middleware.providers import Postmark
from bounce_middleware.settings import as_kinds, parse_settings, resolve
from bounce_middleware.testing import auth_headers, postmark_bounce
from tests import settings_handlers

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


INI_STYLE = {
    "bounce.path": "/hooks/postmark",
    "bounce.credentials": "\n  old:one-password\n  postmark:new-password\n",
    "bounce.handlers": "tests.settings_handlers:remember\ntests.settings_handlers.Namespace.nested",
    "bounce.max_body_size": "2048",
    "bounce.retry_after": "30",
    "bounce.lease_seconds": "12.5",
    "bounce.realm": "postmark hooks",
    "bounce.store": "memory://",
    "pyramid.reload_templates": "true",  # other prefixes are not ours
}


def test_from_settings_builds_a_working_middleware() -> None:
    settings_handlers.received.clear()
    middleware = BounceMiddleware.from_settings(hello, INI_STYLE)
    assert list(middleware.routes) == ["/hooks/postmark"]
    assert middleware.max_body_size == 2048
    assert middleware.receiver.retry_after == 30
    assert middleware.receiver.lease_seconds == 12.5
    route = middleware.routes["/hooks/postmark"]
    assert isinstance(route, Postmark)
    assert route.basic.realm == "postmark hooks"
    assert isinstance(middleware.store, MemoryStore)
    assert [h.name for h in middleware.handlers] == [
        "tests.settings_handlers.remember",
        "tests.settings_handlers.Namespace.nested",
    ]
    app = TestApp(middleware)
    for user, password in [("old", "one-password"), ("postmark", "new-password")]:
        app.post(
            "/hooks/postmark",
            json.dumps(postmark_bounce()),
            headers=auth_headers(user, password),
            status=200,
        )
    assert len(settings_handlers.received) == 4
    assert app.get("/").text == "hello"


def test_already_typed_values_are_accepted() -> None:
    args = parse_settings(
        {
            "x_path": "/b",
            "x_credentials": ["a:b c"],
            "x_handlers": [settings_handlers.remember],
            "x_max_body_size": 10,
        },
        prefix="x_",
    )
    assert args["credentials"] == ["a:b c"]
    assert args["max_body_size"] == 10
    assert args["handlers"][0].func is settings_handlers.remember


def test_extra_keys_of_an_adapter() -> None:
    args = parse_settings(
        {"bounce.path": "/b", "bounce.credentials": "a:b", "bounce.notify_kinds": "hard soft"},
        extra={"notify_kinds": as_kinds},
    )
    assert args["notify_kinds"] == {BounceKind.HARD, BounceKind.SOFT}


def test_a_route_to_an_unknown_provider_names_it() -> None:
    with pytest.raises(ConfigurationError, match="unknown provider 'sendgridx'; known: "):
        BounceMiddleware.from_settings(hello, {"bounce.routes": "/hooks sendgridx"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bounce.path": None}, "'bounce.path' is required"),
        ({"bounce.credentials": None}, "'bounce.credentials' is required"),
        ({"bounce.credentails": "a:b"}, "unknown setting 'bounce.credentails'"),
        ({"bounce.max_body_size": "1MB"}, "'bounce.max_body_size' is invalid"),
        ({"bounce.max_body_size": True}, "'bounce.max_body_size' is invalid"),
        ({"bounce.lease_seconds": "soon"}, "'bounce.lease_seconds' is invalid"),
        ({"bounce.max_body_size": "0"}, "'bounce.max_body_size' is invalid: expected a positive"),
        ({"bounce.retry_after": -1}, "'bounce.retry_after' is invalid: expected a number of"),
        ({"bounce.lease_seconds": "nan"}, "'bounce.lease_seconds' is invalid: expected a positive"),
        ({"bounce.handlers": "nonexistent_module_xyz.handler"}, "'bounce.handlers' is invalid"),
        ({"bounce.handlers": "tests.settings_handlers:missing"}, "has no attribute"),
        ({"bounce.handlers": "tests.settings_handlers:remember."}, "is not a dotted name"),
        ({"bounce.credentials": ["a:b", None]}, "credential 2 is None"),
        ({"bounce.handlers": "noseparator"}, "is not a dotted name"),
        ({"bounce.store": "ftp://db/x"}, "'bounce.store' is invalid: unsupported store URL"),
        ({"bounce.store": "tests.settings_handlers:remember"}, "'bounce.store' is invalid"),
        ({"bounce.path": None, "bounce.credentials": None}, "'bounce.routes' is required"),
    ],
)
def test_bad_settings_name_the_key(changes: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"bounce.path": "/b", "bounce.credentials": "a:b"}
    for key, value in changes.items():
        if value is None:
            del settings[key]
        else:
            settings[key] = value
    with pytest.raises(ConfigurationError) as info:
        BounceMiddleware.from_settings(hello, settings)
    assert message in str(info.value)


def test_bad_kind_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match="'bounce.notify_kinds' is invalid"):
        parse_settings(
            {"bounce.path": "/b", "bounce.credentials": "a:b", "bounce.notify_kinds": "hardest"},
            extra={"notify_kinds": as_kinds},
        )


def test_credentials_never_appear_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        BounceMiddleware.from_settings(
            hello, {"bounce.path": "/b", "bounce.credentials": "user-without-password-s3cret"}
        )
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "name", ["bounce_middleware:MemoryStore", "bounce_middleware.store.MemoryStore"]
)
def test_store_by_dotted_class_name_is_instantiated(name: str) -> None:
    args = parse_settings({"bounce.path": "/b", "bounce.credentials": "a:b", "bounce.store": name})
    assert isinstance(args["store"], MemoryStore)


def test_custom_prefix() -> None:
    middleware = BounceMiddleware.from_settings(
        hello, {"BOUNCE_PATH": "/b", "BOUNCE_CREDENTIALS": "a:b"}, prefix="BOUNCE_"
    )
    assert list(middleware.routes) == ["/b"]


# --- resolve: ConfigurationError for anything it cannot resolve (issue 11) -------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("noseparator", "is not a dotted name"),
        ("a..b", "is not a dotted name"),
        (":attr", "is not a dotted name"),
        ("tests.settings_handlers:", "is not a dotted name"),
        ("tests.settings_handlers:remember..x", "is not a dotted name"),
        ("nonexistent_module_xyz.handler", "cannot import any module"),
        ("nonexistent_module_xyz:handler", "cannot import 'nonexistent_module_xyz'"),
        ("tests.settings_handlers:missing", "has no attribute 'missing'"),
        ("tests.settings_handlers.Namespace.missing", "has no attribute 'missing'"),
        ("tests.broken_settings_module:anything", "cannot import 'tests.broken_settings_module'"),
        ("tests.broken_settings_module.anything", "cannot import 'tests.broken_settings_module'"),
    ],
)
def test_resolve_raises_configuration_error(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(value)
    assert not isinstance(info.value, TypeError)
    assert message in str(info.value)


def test_resolve_passes_objects_through_and_imports_names() -> None:
    assert resolve(settings_handlers.remember) is settings_handlers.remember
    assert resolve("tests.settings_handlers:Namespace.nested") is (
        settings_handlers.Namespace.nested
    )
    assert resolve("tests.settings_handlers.remember") is settings_handlers.remember


# --- parse_settings names keys in each framework's spelling (issue 11) ----------------------


def flask_spelling(key: str) -> str:
    return "BOUNCE_" + key.upper().replace(".", "_")


def django_spelling(key: str) -> str:
    return "BOUNCE_MIDDLEWARE" + "".join(f'["{part.upper()}"]' for part in key.split("."))


@pytest.mark.parametrize(
    ("spell", "settings", "message"),
    [
        (
            flask_spelling,
            {"bounce.path": "/b", "bounce.credentials": "a:b", "bounce.paths": "/x"},
            "unknown setting 'BOUNCE_PATHS'; known: BOUNCE_PATH, BOUNCE_CREDENTIALS, ",
        ),
        (flask_spelling, {"bounce.path": "/b"}, "setting 'BOUNCE_CREDENTIALS' is required"),
        (
            flask_spelling,
            {"bounce.path": "/b", "bounce.credentials": "a:b", "bounce.max_body_size": "lots"},
            "setting 'BOUNCE_MAX_BODY_SIZE' is invalid: expected a whole number",
        ),
        (
            django_spelling,
            {"bounce.path": "/b"},
            'setting BOUNCE_MIDDLEWARE["CREDENTIALS"] is required',
        ),
        (
            django_spelling,
            {"bounce.path": "/b", "bounce.credentials": [None]},
            'setting BOUNCE_MIDDLEWARE["CREDENTIALS"] is invalid: credential 1 is None',
        ),
        (
            django_spelling,
            {"bounce.path": "/b", "bounce.credentials": "a:b", "bounce.colour": "red"},
            'unknown setting BOUNCE_MIDDLEWARE["COLOUR"]; known: BOUNCE_MIDDLEWARE["PATH"], ',
        ),
    ],
)
def test_spell_names_keys_in_the_frameworks_spelling(
    spell: Any, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_settings(settings, "bounce.", spell=spell)
    assert message in str(info.value)
    assert "bounce." not in str(info.value)


def test_without_spell_keys_are_named_with_the_prefix() -> None:
    with pytest.raises(
        ConfigurationError, match="unknown setting 'bounce.Colour'; known: bounce.path"
    ):
        parse_settings({"bounce.path": "/b", "bounce.credentials": "a:b", "bounce.Colour": "x"})
