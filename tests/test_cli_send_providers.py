"""``bounce-middleware send --provider NAME``: every provider's signed sample, posted to a real
server on loopback, and what the command says when a route refuses it.

Postmark's own options (record types, IDs, credentials from the URL) are in
``tests/test_cli.py``; the demo serving every provider in ``tests/test_cli_demo.py``.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from webtest.http import StopableWSGIServer

from bounce_middleware import Bounce, BounceKind, BounceMiddleware, MemoryStore
from bounce_middleware.cli import main
from bounce_middleware.cli.sample_requests import SAMPLE_PROVIDERS
from bounce_middleware.providers import (
    PROVIDERS,
    AmazonSES,
    Mailgun,
    Postmark,
    Provider,
    SendGrid,
)
from bounce_middleware.samples import amazon_ses, mailgun, sendgrid
from bounce_middleware.samples.amazon_ses import TEST_SNS_TOPIC_ARN, test_fetcher
from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY

USER, PASSWORD = "postmark", "a-long-postmark-password"
SIGNING_KEY = "key-for-the-cli-tests-0123456789"
BASIC = ("hooks", "a-long-sendgrid-password")
PATHS = {
    "postmark": "/postmark/bounce",
    "sendgrid": "/sendgrid/bounce",
    "mailgun": "/mailgun/bounce",
    "amazon_ses": "/ses/bounce",
}
# What each provider needs on the command line to authenticate against its route above.
AUTH = {
    "postmark": ["--user", USER, "--password", PASSWORD],
    "sendgrid": ["--provider", "sendgrid"],
    "mailgun": ["--provider", "mailgun", "--secret", SIGNING_KEY],
    "amazon_ses": ["--provider", "amazon_ses"],
}


def not_found(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def production_sendgrid_key() -> str:
    """A SendGrid verification key that is not the TEST one, as a SendGrid account has."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


@dataclass
class Server:
    base: str
    received: list[Bounce] = field(default_factory=list)
    store: MemoryStore = field(default_factory=MemoryStore)

    def url(self, provider: str) -> str:
        return self.base + PATHS[provider]


@pytest.fixture
def server() -> Iterator[Server]:
    """A route per provider as ``send --test-route`` describes it, and production-like ones."""
    received: list[Bounce] = []
    store = MemoryStore()
    routes: dict[str, Provider] = {
        PATHS["postmark"]: Postmark(credentials=[f"{USER}:{PASSWORD}"]),
        PATHS["sendgrid"]: SendGrid(public_key=TEST_PUBLIC_KEY),
        PATHS["mailgun"]: Mailgun(signing_key=SIGNING_KEY),
        PATHS["amazon_ses"]: AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=test_fetcher),
        "/production/sendgrid": SendGrid(public_key=production_sendgrid_key()),
        "/production/ses": AmazonSES(
            topic_arns=["arn:aws:sns:us-east-1:123456789012:production"], fetch=test_fetcher
        ),
        "/basic/sendgrid": SendGrid(public_key=TEST_PUBLIC_KEY, credentials=[":".join(BASIC)]),
    }
    app = BounceMiddleware(not_found, routes=routes, handlers=[received.append], store=store)
    http_server = StopableWSGIServer.create(app, host="127.0.0.1", port=0)
    try:
        yield Server(f"http://127.0.0.1:{http_server.getsockname()[1]}", received, store)
    finally:
        http_server.shutdown()


@pytest.mark.parametrize("provider", list(PATHS))
def test_send_posts_each_providers_sample_and_the_event_is_recorded(
    server: Server, provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", server.url(provider), *AUTH[provider], "--email", "ann@example.com"]

    status = main(argv)

    post, *answer = capsys.readouterr().out.splitlines()
    assert status == 0
    assert answer == ["200 OK", "accepted"]
    assert post.startswith(f"POST {server.url(provider)}  (")
    assert "ann@example.com" in post
    [bounce] = server.received
    assert (bounce.provider, bounce.email, bounce.kind) == (
        provider,
        "ann@example.com",
        BounceKind.HARD,
    )
    assert [r.key for r in server.store.records()] == [bounce.key]


@pytest.mark.parametrize(
    ("provider", "kind", "expected"),
    [
        ("sendgrid", "soft", BounceKind.SOFT),
        ("sendgrid", "complaint", BounceKind.COMPLAINT),
        ("mailgun", "soft", BounceKind.SOFT),
        ("mailgun", "complaint", BounceKind.COMPLAINT),
        ("amazon_ses", "soft", BounceKind.SOFT),
        ("amazon_ses", "complaint", BounceKind.COMPLAINT),
    ],
)
def test_send_kind_picks_the_sample(
    server: Server,
    provider: str,
    kind: str,
    expected: BounceKind,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["send", server.url(provider), *AUTH[provider], "--kind", kind]) == 0

    assert f"{kind} for john@example.com)" in capsys.readouterr().out
    assert [(b.kind, b.email) for b in server.received] == [(expected, "john@example.com")]


@pytest.mark.parametrize(
    ("provider", "kind", "answer"),
    [
        ("sendgrid", "delivered", "ignored"),
        ("mailgun", "delivered", "ignored"),
        ("amazon_ses", "confirmation", "subscription confirmed"),
        ("amazon_ses", "validation", "validated"),
    ],
)
def test_send_samples_that_are_not_bounces_are_answered_and_dispatch_nothing(
    server: Server, provider: str, kind: str, answer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", server.url(provider), *AUTH[provider], "--kind", kind]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[1] == "200 OK"
    assert answer in out[2]
    assert server.received == []


def test_each_send_is_a_new_event_for_every_provider(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    for provider in PATHS:
        for _ in range(2):
            assert main(["send", server.url(provider), *AUTH[provider]]) == 0

    assert len({bounce.key for bounce in server.received}) == 2 * len(PATHS)


def test_mailgun_takes_the_signing_key_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOUNCE_SECRET", SIGNING_KEY)

    assert main(["send", server.url("mailgun"), "--provider", "mailgun"]) == 0

    assert SIGNING_KEY not in capsys.readouterr().out
    assert len(server.received) == 1


def test_mailgun_with_another_signing_key_is_401_with_the_advice(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", server.url("mailgun"), "--provider", "mailgun", "--secret", "key-not-it"]

    status = main(argv)

    _, *answer = capsys.readouterr().out.splitlines()
    assert status == 1
    assert answer[:2] == ["401 Unauthorized", "not authenticated"]
    [advice] = answer[2:]
    assert advice.startswith("the route did not accept the signature: --secret (or BOUNCE_SECRET)")
    assert "Mailgun(signing_key=...)" in advice
    assert "key-not-it" not in advice
    assert server.received == []


@pytest.mark.parametrize(
    ("provider", "path", "says"),
    [
        ("sendgrid", "/production/sendgrid", "signed with the published TEST key"),
        ("amazon_ses", "/production/ses", "from the TEST topic"),
    ],
)
def test_test_signed_samples_on_a_production_route_are_401_with_the_advice(
    server: Server, provider: str, path: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["send", server.base + path, "--provider", provider])

    _, *answer = capsys.readouterr().out.splitlines()
    assert status == 1
    assert answer[:2] == ["401 Unauthorized", "not authenticated"]
    [advice] = answer[2:]
    assert says in advice
    assert "as it must" in advice
    assert f"`bounce-middleware send --provider {provider} --test-route`" in advice
    assert server.received == []


def test_a_signed_route_that_also_checks_basic_credentials(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.base + "/basic/sendgrid"

    assert main(["send", url, "--provider", "sendgrid"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == ["401 Unauthorized", "authentication required"]
    assert lines[3].startswith("the route asks for HTTP Basic credentials: pass --user and")
    assert server.received == []

    user, password = BASIC
    in_url = url.replace("http://", f"http://{user}:{password}@")
    assert (
        main(["send", url, "--provider", "sendgrid", "--user", user, "--password", password]) == 0
    )
    assert main(["send", in_url, "--provider", "sendgrid"]) == 0
    assert password not in capsys.readouterr().out
    assert len(server.received) == 2


def test_a_signed_sample_to_a_postmark_route_names_the_provider_option(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", server.url("postmark"), "--provider", "sendgrid"]) == 1

    advice = capsys.readouterr().out.splitlines()[-1]
    assert "asks for HTTP Basic credentials" in advice
    assert "(--provider postmark)" in advice


def test_postmark_with_other_credentials_is_401_with_the_advice(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", server.url("postmark"), "--user", USER, "--password", "nope"]) == 1

    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == ["401 Unauthorized", "authentication required"]
    assert lines[3].startswith("the route refused these credentials: give the user name and")
    assert "Postmark(credentials=[...])" in lines[3]


def test_a_signed_sample_on_the_wrong_path_names_that_providers_demo_path(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", server.base + "/hooks/sendgrid", "--provider", "sendgrid"]) == 1

    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "404 Not Found"
    assert "the demo and the examples use /sendgrid/bounce" in lines[2]


def test_help_lists_the_providers_and_their_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--help"]) == 0

    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    names = ", ".join(PROVIDERS)  # every registered provider, new ones included
    assert f"whose webhook to send: {names} (default: postmark)" in text
    for provider in SAMPLE_PROVIDERS.values():
        if provider.kinds:
            assert f"{provider.label}: {', '.join(provider.kinds)}" in text
    assert "BOUNCE_SECRET" in text
    assert "--test-route" in text


def test_the_provider_choices_are_the_registry() -> None:
    assert set(SAMPLE_PROVIDERS) <= set(PROVIDERS)


def test_the_kinds_listed_are_the_samples_modules_own() -> None:
    assert SAMPLE_PROVIDERS["sendgrid"].kinds == tuple(sendgrid.SENDGRID_KINDS)
    assert SAMPLE_PROVIDERS["mailgun"].kinds == tuple(mailgun.MAILGUN_KINDS)
    extra = ("confirmation", "validation")  # sample_request's SNS messages that are not SES's
    assert SAMPLE_PROVIDERS["amazon_ses"].kinds == (*amazon_ses.SES_KINDS, *extra)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "sendgrid", "--secret", "x"], "signed with the published TEST key, not"),
        (["--provider", "amazon_ses", "--secret", "x"], "--test-route` shows the route"),
        (["--provider", "mailgun"], "no signing key: pass --secret"),
        (["--provider", "mailgun", "--secret", "k", "--kind", "nope"], "known: hard, soft"),
        (["--provider", "sendgrid", "--kind", "nope"], "known: hard, blocked"),
        (["--provider", "sendgrid", "--type", "SoftBounce"], "--type applies to Postmark only"),
        (["--provider", "sendgrid", "--record-type", "Open"], "--record-type applies to Postmark"),
        (["--provider", "amazon_ses", "--id", "3"], "--id applies to Postmark only"),
        (["--provider", "sendgrid", "--password", "p"], "a password without a user name"),
        (["--provider", "nobody"], "invalid choice"),
        (["--user", "u", "--password", "p", "--kind", "soft"], "for Postmark, --record-type"),
        (["--user", "u", "--password", "p", "--secret", "s"], "Postmark checks HTTP Basic"),
    ],
)
def test_options_that_do_not_fit_the_provider_are_usage_errors(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("BOUNCE_SECRET", raising=False)

    assert main(["send", "http://127.0.0.1:9/x", *argv]) == 2

    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_no_url_names_the_providers_demo_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--provider", "mailgun", "--secret", "k"]) == 2

    assert "no URL: give the webhook URL, e.g. http://127.0.0.1:8000/mailgun/bounce" in (
        capsys.readouterr().err
    )


def test_a_registered_provider_without_samples_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(PROVIDERS, "pigeon", "bounce_middleware.providers.postmark:Postmark")

    assert main(["send", "http://127.0.0.1:9/x", "--provider", "pigeon"]) == 2

    assert "send has no samples for provider pigeon yet" in capsys.readouterr().err


@pytest.mark.parametrize("provider", ["sendgrid", "amazon_ses"])
def test_without_cryptography_the_signed_samples_name_the_extra(
    provider: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What an absent package looks like to the import system.
    for name in [n for n in sys.modules if n.split(".")[0] == "cryptography"] + ["cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)

    assert main(["send", "http://127.0.0.1:9/x", "--provider", provider]) == 2

    err = capsys.readouterr().err
    assert 'pip install "bounce-middleware[crypto]"' in err
    assert "Traceback" not in err


# -- --test-route: what it prints is a route that accepts the samples ------------------------


def blocks(text: str) -> list[str]:
    """The indented blocks of ``--test-route``'s text, dedented."""
    found, current = [], list[str]()
    for line in [*text.splitlines(), ""]:
        if line.startswith("    "):
            current.append(line[4:])
        elif current and not line:
            found.append("\n".join(current))
            current = []
    return found


def serve(app: BounceMiddleware) -> StopableWSGIServer:
    return StopableWSGIServer.create(app, host="127.0.0.1", port=0)


@pytest.mark.parametrize("provider", list(PATHS))
def test_test_route_prints_a_configuration_that_accepts_the_printed_command(
    provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", "--provider", provider, "--test-route"]) == 0
    imports, code, settings, command = blocks(capsys.readouterr().out)
    namespace: dict[str, Any] = {}
    exec(f"{imports}\n{code}", namespace)  # exactly the Python printed
    flat = dict(line.split(" = ", 1) for line in settings.splitlines())
    received: list[Bounce] = []
    for app in (
        BounceMiddleware(not_found, routes=namespace["routes"], handlers=[received.append]),
        BounceMiddleware.from_settings(not_found, {**flat, "bounce.handlers": [received.append]}),
    ):
        http_server = serve(app)
        try:
            site = f"http://127.0.0.1:{http_server.getsockname()[1]}"
            argv = command.replace("https://test.example.com", site).split()
            assert argv[:2] == ["bounce-middleware", "send"]
            assert main(argv[1:]) == 0
        finally:
            http_server.shutdown()

    assert [(b.provider, b.kind) for b in received] == [(provider, BounceKind.HARD)] * 2


def test_test_route_of_a_url_uses_its_path_and_never_prints_its_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "https://hooks:Top-Secret-Passw0rd@staging.example.com/hooks/sendgrid"

    assert main(["send", url, "--provider", "sendgrid", "--test-route"]) == 0

    out = capsys.readouterr().out
    assert 'routes = {"/hooks/sendgrid": SendGrid(public_key=TEST_PUBLIC_KEY)}' in out
    assert "bounce-middleware send https://staging.example.com/hooks/sendgrid" in out
    assert "Top-Secret-Passw0rd" not in out
    assert out.rstrip().endswith(TEST_PUBLIC_KEY)


def test_test_route_of_a_provider_send_does_not_know_points_to_its_samples(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(PROVIDERS, "pigeon", "bounce_middleware.providers.postmark:Postmark")

    assert main(["send", "--provider", "pigeon", "--test-route"]) == 0

    assert "bounce_middleware.samples.pigeon.sample_request" in capsys.readouterr().out


def test_importing_the_cli_imports_no_signed_providers_samples_nor_cryptography() -> None:
    # Every command starts with this import; only `send --provider X` needs X's samples.
    script = "import sys, bounce_middleware.cli; print(sorted(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )

    for module in ("sendgrid", "mailgun", "amazon_ses"):
        assert f"'bounce_middleware.samples.{module}'" not in result.stdout
        assert f"'bounce_middleware.providers.{module}'" not in result.stdout
    assert "'cryptography'" not in result.stdout
