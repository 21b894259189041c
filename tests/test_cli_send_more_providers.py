"""``send --provider`` for Mailjet, SparkPost, Brevo, Resend and Mandrill: each sample posted
to a real server on loopback, authenticated as each route expects, and the refusals."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import pytest
from webtest.http import StopableWSGIServer

from bounce_middleware import Bounce, BounceKind, BounceMiddleware, MemoryStore
from bounce_middleware.cli import main
from bounce_middleware.cli.sample_requests import SAMPLE_PROVIDERS
from bounce_middleware.providers import Brevo, Mailjet, Mandrill, Provider, Resend, SparkPost

USER, PASSWORD = "hooks", "a-long-webhook-password-42"
TOKEN = "a-long-bearer-token-for-the-cli-tests"
RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-cli-test-key-0123456789ab").decode()
MANDRILL_KEY = "mandrill-cli-test-webhook-key"
PUBLIC_URL = "https://hooks.example.com/mandrill"  # as pasted in Mandrill, behind a proxy
PATHS = {
    "mailjet": "/mailjet/bounce",
    "sparkpost": "/sparkpost/bounce",
    "brevo": "/brevo/bounce",
    "resend": "/resend/bounce",
    "mandrill": "/mandrill/bounce",
}
AUTH = {
    "mailjet": ["--provider", "mailjet", "--user", USER, "--password", PASSWORD],
    "sparkpost": ["--provider", "sparkpost", "--secret", TOKEN],
    "brevo": ["--provider", "brevo", "--secret", TOKEN],
    "resend": ["--provider", "resend", "--secret", RESEND_SECRET],
    "mandrill": ["--provider", "mandrill", "--secret", MANDRILL_KEY],
}


def not_found(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


@dataclass
class Server:
    base: str
    received: list[Bounce] = field(default_factory=list)

    def url(self, provider: str) -> str:
        return self.base + PATHS[provider]


@pytest.fixture
def server() -> Iterator[Server]:
    received: list[Bounce] = []
    credentials = [f"{USER}:{PASSWORD}"]
    routes: dict[str, Provider] = {
        PATHS["mailjet"]: Mailjet(credentials=credentials),
        PATHS["sparkpost"]: SparkPost(tokens=[TOKEN], credentials=credentials),
        PATHS["brevo"]: Brevo(tokens=[TOKEN], credentials=credentials),
        PATHS["resend"]: Resend(secret=RESEND_SECRET),
        PATHS["mandrill"]: Mandrill(key=MANDRILL_KEY),  # signed over the URL it is called by
        "/proxied/mandrill": Mandrill(key=MANDRILL_KEY, url=PUBLIC_URL),
    }
    app = BounceMiddleware(
        not_found, routes=routes, handlers=[received.append], store=MemoryStore()
    )
    http_server = StopableWSGIServer.create(app, host="127.0.0.1", port=0)
    try:
        yield Server(f"http://127.0.0.1:{http_server.getsockname()[1]}", received)
    finally:
        http_server.shutdown()


@pytest.mark.parametrize("provider", list(PATHS))
def test_each_providers_hard_sample_is_sent_and_recorded_once_per_send(
    server: Server, provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        argv = ["send", server.url(provider), *AUTH[provider], "--email", "ann@example.com"]
        assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:3] == ["200 OK", "accepted"]
    assert [(b.provider, b.email, b.kind) for b in server.received] == [
        (provider, "ann@example.com", BounceKind.HARD)
    ] * 2
    assert server.received[0].key != server.received[1].key  # each send is a new event


@pytest.mark.parametrize("provider", list(PATHS))
def test_every_kind_listed_is_the_samples_modules_own_and_is_answered_200(
    server: Server, provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kinds = SAMPLE_PROVIDERS[provider].kinds
    assert kinds == import_module(f"bounce_middleware.samples.{provider}").SAMPLE_KINDS
    for kind in kinds:
        assert main(["send", server.url(provider), *AUTH[provider], "--kind", kind]) == 0, kind
    assert "200 OK" in capsys.readouterr().out


@pytest.mark.parametrize("provider", ["sparkpost", "brevo"])
def test_header_auth_providers_take_basic_credentials_instead_of_a_token(
    server: Server, provider: str
) -> None:
    argv = ["send", server.url(provider), "--provider", provider, "--user", USER]
    assert main([*argv, "--password", PASSWORD]) == 0
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("provider", "argv", "advice"),
    [
        ("mailjet", ["--user", USER, "--password", "wrong-password-123"], "Mailjet(credentials"),
        ("sparkpost", ["--secret", "not-the-token-at-all"], "SparkPost(tokens"),
        ("brevo", ["--secret", "not-the-token-at-all"], "Brevo(tokens"),
        ("resend", ["--secret", "whsec_" + "A" * 32], "Resend(secret"),
        ("mandrill", ["--secret", "not-the-token-at-all"], "Mandrill(key"),
    ],
)
def test_wrong_secrets_are_401_with_advice_and_nothing_recorded(
    server: Server,
    provider: str,
    argv: list[str],
    advice: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["send", server.url(provider), "--provider", provider, *argv]) == 1
    out = capsys.readouterr().out
    assert "401 Unauthorized" in out and advice in out
    assert "not-the-token-at-all" not in out and "wrong-password-123" not in out
    assert server.received == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--provider", "mailjet", "--user", "u", "--password", "p", "--secret", "x"],
            "signs nothing",
        ),
        (["--provider", "mailjet"], "no user name"),
        (["--provider", "sparkpost"], "pass --user and --password"),
        (["--provider", "resend"], "no signing key"),
        (["--provider", "brevo", "--user", "u", "--password", "p", "--secret", "t"], "not both"),
        (["--provider", "brevo", "--signed-url", "http://x/"], "--signed-url applies to Mandrill"),
    ],
)
def test_missing_or_misplaced_secrets_are_refused_before_sending(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BOUNCE_SECRET", "BOUNCE_USER", "BOUNCE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    # Port 9 (discard) is never reached: the command stops first.
    assert main(["send", "http://127.0.0.1:9/hook", *argv]) == 2
    assert message in capsys.readouterr().err


def test_mandrill_signs_the_url_the_route_names_with_signed_url(server: Server) -> None:
    url = server.base + "/proxied/mandrill"
    assert main(["send", url, *AUTH["mandrill"]]) == 1  # signed over the URL posted to: 401
    assert main(["send", url, *AUTH["mandrill"], "--signed-url", PUBLIC_URL]) == 0
    assert [b.provider for b in server.received] == ["mandrill"]


def test_the_resend_test_route_prints_a_secret_that_loads_and_accepts_the_samples(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", "--provider", "resend", "--test-route"]) == 0
    printed = capsys.readouterr().out
    secret = printed.split('Resend(secret="')[1].split('"')[0]
    Resend(secret=secret)  # a placeholder would raise ConfigurationError here
    assert f"--secret {secret}" in printed


def test_an_exported_secret_does_not_stop_basic_credentials_from_being_sent(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOUNCE_SECRET", "an-unrelated-exported-token")
    argv = ["send", server.url("brevo"), "--provider", "brevo", "--user", USER]
    assert main([*argv, "--password", PASSWORD]) == 0
    assert len(server.received) == 1
