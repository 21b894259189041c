"""The settings reader's routes: providers named in settings, built from their own keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import pytest

from bounce_middleware import BounceMiddleware, ConfigurationError
from bounce_middleware.converters import as_list
from bounce_middleware.errors import Unauthorized
from bounce_middleware.providers import Mailgun, Parsed, Postmark
from bounce_middleware.request import WebhookRequest, post
from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY, sendgrid_event
from bounce_middleware.samples.sendgrid import sign_request as sign_sendgrid_request
from bounce_middleware.settings import ProviderSettings, parse_settings, read_settings
from bounce_middleware.testing import auth_headers
from tests.signatures.selfmade import ec_key, sendgrid_ui_key
from tests.test_settings import hello

SECRET = "tests-only-mailgun-signing-key"
#: Another P-256 key as SendGrid's UI shows one (a rotation's second key).
OTHER_SENDGRID_KEY = sendgrid_ui_key(ec_key(1))
PASSWORD = "tests-only-postmark-password"
TWO_ROUTES = {
    "bounce.routes": "\n/hooks/postmark postmark\n/hooks/mailgun mailgun\n",
    "bounce.postmark.credentials": f"postmark:{PASSWORD}",
    "bounce.mailgun.signing_key": SECRET,
}


class Acme:
    """A provider of the user's own, with an options table: built from ``acme.*`` keys."""

    name = "acme"
    methods = frozenset({"POST"})
    refuse_status = 400
    retry_status = None
    options: ClassVar[Mapping[str, str]] = {"token": "str", "strict": "bool", "tags": "list"}
    built = 0

    def __init__(self, *, token: str, strict: bool = False, tags: Iterable[str] = ()) -> None:
        if token == "explode":
            # Someone else's code quoting a value: the reader must not repeat it.
            raise ValueError(f"cannot use {token!r} with tags {list(tags)!r}")
        Acme.built += 1
        self.token, self.strict, self.tags = token, strict, list(tags)

    def authenticate(self, request: WebhookRequest) -> None:
        """Everyone is welcome in a test."""

    def parse(self, request: WebhookRequest) -> Parsed:
        """Nothing to dispatch."""
        return Parsed(acknowledged=("Ping",))


ready_made = Postmark(credentials=[f"postmark:{PASSWORD}"])


def postmark_factory() -> Postmark:
    """A factory called with no arguments, named in settings."""
    return Postmark(credentials=[f"factory:{PASSWORD}"])


def test_two_routes_from_ini_lines() -> None:
    middleware = BounceMiddleware.from_settings(hello, TWO_ROUTES)
    assert list(middleware.routes) == ["/hooks/postmark", "/hooks/mailgun"]
    postmark, mailgun = middleware.routes.values()
    assert isinstance(postmark, Postmark)
    assert isinstance(mailgun, Mailgun)
    assert mailgun.keys == (SECRET.encode(),)
    assert set(middleware.providers) == {"postmark", "mailgun"}


@pytest.mark.parametrize(
    "spelling",
    [
        {"bounce.mailgun.signing_key": f"{SECRET} older-key", "bounce.mailgun.max_age": "60"},
        {"bounce.mailgun_signing_key": f"{SECRET} older-key", "bounce.mailgun_max_age": 60},
        {"bounce.mailgun": {"signing_key": [SECRET, "older-key"], "MAX_AGE": "60"}},
        {"bounce.MAILGUN": {"SIGNING_KEY": f"{SECRET}\nolder-key"}, "bounce.Mailgun.Max_Age": 60.0},
    ],
    ids=["dotted", "underscored", "mapping", "mixed-case"],
)
def test_every_spelling_of_an_option_reads_the_same(spelling: dict[str, Any]) -> None:
    settings = {
        "bounce.routes": {"/hooks/mailgun": "Mailgun"},  # names are case-insensitive
        **spelling,
    }
    [mailgun] = parse_settings(settings)["routes"].values()
    assert mailgun.keys == (SECRET.encode(), b"older-key")
    assert mailgun.max_age == 60.0


def pem(base64_key: str, indent: str = "") -> str:
    """A key as SendGrid's UI shows it (base64 DER), in PEM: as an .ini may hold it."""
    lines = [base64_key[i : i + 64] for i in range(0, len(base64_key), 64)]
    block = ["-----BEGIN PUBLIC KEY-----", *lines, "-----END PUBLIC KEY-----"]
    return "\n".join(indent + line for line in block)


@pytest.mark.parametrize(
    "keys",
    [
        pem(TEST_PUBLIC_KEY),
        "\n" + pem(TEST_PUBLIC_KEY, indent="    ") + "\n",  # an .ini value on several lines
        f"{OTHER_SENDGRID_KEY}\n{pem(TEST_PUBLIC_KEY)}",  # rotating: base64 and PEM
        f"{pem(OTHER_SENDGRID_KEY)} {pem(TEST_PUBLIC_KEY)}",
        [pem(TEST_PUBLIC_KEY)],
    ],
    ids=["pem", "ini-lines", "base64-and-pem", "two-pems", "list"],
)
def test_a_sendgrid_key_in_pem_is_read_from_settings_as_one_key(keys: str | list[str]) -> None:
    for settings in (
        {"bounce.routes": "/sg sendgrid", "bounce.sendgrid.public_key": keys},
        {"bounce.routes": {"/sg": "sendgrid"}, "bounce.sendgrid": {"public_key": keys}},
    ):
        [provider] = parse_settings(settings)["routes"].values()
        expected = 1 if isinstance(keys, list) else keys.count("MFkw")
        assert len(provider.keys) == expected
        headers, body = sign_sendgrid_request([sendgrid_event()])
        provider.authenticate(post("/sg", body, headers))


def test_list_settings_keep_pem_blocks_whole_and_split_the_rest() -> None:
    block = "-----BEGIN PUBLIC KEY-----\nAAAA\n  BBBB\n-----END PUBLIC KEY-----"
    assert as_list(f"a {block}\nb") == ["a", block, "b"]
    # No END of the same label: not a block, split as ever (the provider then refuses it).
    assert as_list("-----BEGIN PUBLIC KEY----- AAAA") == [
        "-----BEGIN",
        "PUBLIC",
        "KEY-----",
        "AAAA",
    ]


def test_the_mapping_and_the_lines_give_the_same_routes() -> None:
    lines = parse_settings(TWO_ROUTES)["routes"]
    mapping = parse_settings(
        {
            **TWO_ROUTES,
            "bounce.routes": {"/hooks/postmark": "postmark", "/hooks/mailgun": "mailgun"},
        }
    )["routes"]
    assert {p: type(v) for p, v in lines.items()} == {p: type(v) for p, v in mapping.items()}


def test_one_provider_on_two_paths_is_built_once() -> None:
    routes = parse_settings({**TWO_ROUTES, "bounce.routes": "/a mailgun /b mailgun /c postmark"})[
        "routes"
    ]
    # One replay memory for both paths: a token accepted on /a is refused on /b.
    assert routes["/a"] is routes["/b"]


def test_a_dotted_class_with_options_is_built_from_its_own_keys() -> None:
    before = Acme.built
    routes = parse_settings(
        {
            "bounce.routes": "/hooks/acme tests.test_settings_providers:Acme",
            "bounce.acme.token": "t0k3n",
            "bounce.acme_strict": "yes",
            "bounce.acme.tags": "a b",
        }
    )["routes"]
    acme = routes["/hooks/acme"]
    assert (acme.token, acme.strict, acme.tags) == ("t0k3n", True, ["a", "b"])
    assert Acme.built == before + 1


@pytest.mark.parametrize(
    ("name", "user"),
    [
        ("tests.test_settings_providers:ready_made", "postmark"),
        ("tests.test_settings_providers.postmark_factory", "factory"),
    ],
)
def test_a_dotted_object_or_factory_is_the_route(name: str, user: str) -> None:
    [provider] = parse_settings({"bounce.routes": {"/p": name}})["routes"].values()
    assert isinstance(provider, Postmark)
    provider.authenticate(post("/p", b"{}", auth_headers(user, PASSWORD)))
    other = "factory" if user == "postmark" else "postmark"
    with pytest.raises(Unauthorized):
        provider.authenticate(post("/p", b"{}", auth_headers(other, PASSWORD)))


def test_objects_in_a_mapping_pass_through() -> None:
    routes = parse_settings({"bounce.routes": {"/p": ready_made}})["routes"]
    assert routes == {"/p": ready_made}


def test_read_settings_names_providers_without_building_them() -> None:
    before = Acme.built
    options, routes = read_settings(
        {"bounce.routes": "/a tests.test_settings_providers:Acme", "bounce.acme.token": "x"}
    )
    assert Acme.built == before
    assert options == {}
    assert routes is not None
    provider = routes["/a"]
    assert isinstance(provider, ProviderSettings)
    assert (provider.name, provider.cls) == ("acme", Acme)
    assert provider.key("token") == "'bounce.acme.token'"
    assert provider.key("strict") == "'bounce.acme.strict'"
    provider.build()
    assert Acme.built == before + 1


def test_version_one_settings_return_no_routes() -> None:
    options, routes = read_settings({"bounce.path": "/p", "bounce.credentials": "a:b"})
    assert routes is None
    assert options == {"path": "/p", "credentials": ["a:b"]}


def test_version_one_provider_key_may_say_postmark() -> None:
    args = parse_settings(
        {"bounce.path": "/p", "bounce.credentials": "a:b", "bounce.provider": "Postmark"}
    )
    assert "provider" not in args
    assert list(BounceMiddleware(hello, **args).routes) == ["/p"]


def flask(key: str) -> str:
    return "BOUNCE_" + key.upper().replace(".", "_")


def django(key: str) -> str:
    return "BOUNCE_MIDDLEWARE" + "".join(f'["{part.upper()}"]' for part in key.split("."))


@pytest.mark.parametrize(
    ("settings", "spell", "message"),
    [
        (
            {"bounce.mailgun.signing_key": None},
            None,
            "setting 'bounce.mailgun.signing_key' is None — is the environment variable",
        ),
        (
            {"bounce.mailgun": {"SIGNING_KEY": None}},
            django,
            'setting BOUNCE_MIDDLEWARE["MAILGUN"]["SIGNING_KEY"] is None',
        ),
        ({"bounce.mailgun.signing_key": None}, None, "bounce.mailgun.signing_key"),
        (
            {"bounce.mailgun.signing_key": SECRET, "bounce.mailgun_signing_key": SECRET},
            None,
            "settings 'bounce.mailgun.signing_key' and 'bounce.mailgun_signing_key' both set "
            "the mailgun option signing_key; keep one",
        ),
        (
            {"bounce.mailgun.signing_key": SECRET, "bounce.mailgun.signingkey": SECRET},
            flask,
            "unknown setting 'BOUNCE_MAILGUN_SIGNINGKEY' for provider mailgun; its settings: "
            "'BOUNCE_MAILGUN_SIGNING_KEY', 'BOUNCE_MAILGUN_CREDENTIALS'",
        ),
        (
            {"bounce.mailgun.max_age": "60"},
            django,
            'the mailgun route needs setting BOUNCE_MIDDLEWARE["MAILGUN"]["SIGNING_KEY"]',
        ),
        (
            {"bounce.mailgun.signing_key": SECRET, "bounce.mailgun.max_age": "a minute"},
            flask,
            "setting 'BOUNCE_MAILGUN_MAX_AGE' is invalid",
        ),
        (
            {"bounce.mailgun": SECRET},
            django,
            'setting BOUNCE_MIDDLEWARE["MAILGUN"] must map the mailgun route\'s option names '
            "to values, not be a str",
        ),
        (
            {"bounce.mailgun.signing_key": SECRET, "bounce.sendgrid.public_key": "MFkw"},
            flask,
            "setting 'BOUNCE_SENDGRID_PUBLIC_KEY' is for provider sendgrid, but no route uses "
            "it; add it to 'BOUNCE_ROUTES'",
        ),
        (
            {"bounce.mailgun.signing_key": SECRET, "bounce.credentials": f"a:{PASSWORD}"},
            django,
            'setting BOUNCE_MIDDLEWARE["CREDENTIALS"] is for one Postmark route without '
            'BOUNCE_MIDDLEWARE["ROUTES"]; with routes, give '
            'BOUNCE_MIDDLEWARE["POSTMARK"]["CREDENTIALS"]',
        ),
        (
            {"bounce.mailgun.signing_key": SECRET, "bounce.path": "/x"},
            None,
            "setting 'bounce.path' is for one Postmark route without 'bounce.routes'; with "
            "routes, make the path a key of it",
        ),
        (
            {"bounce.mailgun.signing_key": SECRET, "bounce.provider": "mailgun"},
            flask,
            "setting 'BOUNCE_PROVIDER' is version 1's; with 'BOUNCE_ROUTES', each route names",
        ),
        (
            {"bounce.routes": "/m mailgun /m postmark"},
            None,
            "setting 'bounce.routes' is invalid: the path '/m' has two routes",
        ),
        (
            {"bounce.routes": "/m mailgun /p"},
            None,
            "setting 'bounce.routes' is invalid: expected lines of 'path provider'",
        ),
        (
            {"bounce.routes": {"hooks/m": "mailgun"}},
            flask,
            "setting 'BOUNCE_ROUTES' is invalid: a route's path must start with '/'",
        ),
        ({"bounce.routes": {}}, flask, "setting 'BOUNCE_ROUTES' is invalid: no route given"),
        (
            {"bounce.routes": {"/m": None}},
            django,
            "setting BOUNCE_MIDDLEWARE[\"ROUTES\"] is invalid: the route '/m' needs a provider "
            "name such as 'sendgrid', a dotted name or a provider object, not a NoneType",
        ),
        (
            {"bounce.routes": {"/m": "mailgunn"}},
            None,
            "setting 'bounce.routes' is invalid: unknown provider 'mailgunn'; known: ",
        ),
        (
            {"bounce.routes": 42},
            None,
            "setting 'bounce.routes' is invalid: expected {path: provider} or lines",
        ),
    ],
)
def test_route_errors_name_the_key(
    settings: dict[str, Any], spell: Callable[[str], str] | None, message: str
) -> None:
    settings = {"bounce.routes": "/m mailgun", **settings}
    with pytest.raises(ConfigurationError) as info:
        parse_settings(settings, spell=spell)
    assert message in str(info.value)
    assert SECRET not in str(info.value)
    assert PASSWORD not in str(info.value)
    if spell is not None:
        assert "bounce." not in str(info.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"bounce.provider": "sendgrid", "bounce.path": "/p", "bounce.credentials": "a:b"},
        {"bounce.provider": "postmark", "bounce.routes": "/p postmark"},
    ],
)
def test_version_one_provider_key_is_explained(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="'bounce.provider'"):
        parse_settings(settings)


@pytest.mark.parametrize(
    ("settings", "keys"),
    [
        (
            {"bounce.acme.token": "explode", "bounce.acme.tags": [SECRET]},
            "'bounce.acme.token', 'bounce.acme.strict', 'bounce.acme.tags'",
        ),
        (
            # Keys given in a mapping are named as written; the others as the framework spells.
            {"bounce.acme": {"token": "explode", "tags": SECRET}},
            """bounce.acme["token"], 'bounce.acme.strict', bounce.acme["tags"]""",
        ),
    ],
)
def test_a_constructor_error_never_repeats_a_given_value(
    settings: dict[str, Any], keys: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_settings({"bounce.routes": "/a tests.test_settings_providers:Acme", **settings})
    message = str(info.value)
    assert message == (
        "the acme route is refused: cannot use '<hidden>' with tags ['<hidden>'] "
        f"(its settings: {keys})"
    )


def test_a_provider_error_names_every_key_of_the_provider() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_settings(
            {"bounce.routes": "/m mailgun", "bounce.mailgun.signing_key": [SECRET, ""]},
            spell=django,
        )
    message = str(info.value)
    assert "the mailgun route is refused: Mailgun signing key 2 is empty" in message
    assert 'its settings: BOUNCE_MIDDLEWARE["MAILGUN"]["SIGNING_KEY"], ' in message
    assert SECRET not in message


def test_two_classes_may_not_share_a_name() -> None:
    with pytest.raises(ConfigurationError, match="two different provider classes are named"):
        parse_settings(
            {
                "bounce.routes": {
                    "/a": "postmark",
                    "/b": "tests.test_settings_providers:Impostor",
                },
                "bounce.postmark.credentials": "a:b",
            }
        )


class Impostor(Acme):
    """Another class calling itself postmark."""

    name = "postmark"
