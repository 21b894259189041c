"""The ``bounce-middleware`` command: ``send`` to a real server on loopback, usage errors,
and how the command is packaged.

``list`` and ``replay`` are in ``tests/test_cli_replay.py``, ``demo`` as a real process
in ``tests/test_cli_demo.py``."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from webtest.http import StopableWSGIServer

from bounce_middleware import Bounce, BounceKind, BounceMiddleware, MemoryStore, samples, testing
from bounce_middleware.cli import main
from bounce_middleware.providers.postmark import TYPE_KINDS

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "s3cret:with@odd/chars"
# Bounds every wait on another thread or process; never reached when things work.
DEADLINE = 30


def not_found(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


# -- send ------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    received: list[Bounce] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    """A BounceMiddleware with a MemoryStore, served by waitress on 127.0.0.1."""
    received: list[Bounce] = []
    app = BounceMiddleware(
        not_found,
        path=PATH,
        credentials=[f"{USER}:{PASSWORD}"],
        handlers=[received.append],
        store=MemoryStore(),
    )
    # Port 0: the system picks a free port; the socket listens once create() returns.
    http_server = StopableWSGIServer.create(app, host="127.0.0.1", port=0)
    try:
        port = http_server.getsockname()[1]
        yield Server(f"http://127.0.0.1:{port}{PATH}", received)
    finally:
        http_server.shutdown()


def test_send_posts_a_bounce_and_prints_the_answer(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["send", server.url, "--user", USER, "--password", PASSWORD, "--email", "ann@example.com"]
    )

    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[1:] == ["200 OK", "accepted"]
    assert f"POST {server.url}" in out
    [bounce] = server.received
    assert (bounce.email, bounce.kind, bounce.type) == (
        "ann@example.com",
        BounceKind.HARD,
        "HardBounce",
    )


def test_send_with_a_wrong_password_prints_401_and_exits_1(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["send", server.url, "--user", USER, "--password", "wrong"])

    out = capsys.readouterr().out
    assert status == 1
    assert "401 Unauthorized" in out
    assert "wrong" not in out
    assert server.received == []


def test_send_takes_credentials_from_the_url_as_postmark_does(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    userinfo = f"{USER}:{urllib.parse.quote(PASSWORD, safe='')}@"
    url = server.url.replace("http://", "http://" + userinfo)

    status = main(["send", url])

    captured = capsys.readouterr()
    assert status == 0, captured
    assert len(server.received) == 1
    assert "s3cret" not in captured.out  # the printed URL has no credentials


def test_send_percent_encodes_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(environ["PATH_INFO"])
        return not_found(environ, start_response)

    http_server = StopableWSGIServer.create(app, host="127.0.0.1", port=0)
    try:
        url = f"http://u:p@127.0.0.1:{http_server.getsockname()[1]}/pöst mark/bounce?a=1"
        assert main(["send", url]) == 1
    finally:
        http_server.shutdown()

    assert "404 Not Found" in capsys.readouterr().out
    assert seen == ["/pöst mark/bounce".encode().decode("latin-1")]  # PEP 3333's str of bytes


def test_send_takes_the_password_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOUNCE_PASSWORD", PASSWORD)

    assert main(["send", server.url, "--user", USER]) == 0
    assert len(server.received) == 1


def test_send_one_id_twice_is_a_redelivery(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", server.url, "--user", USER, "--password", PASSWORD, "--id", "42"]

    assert main(argv) == 0
    assert main(argv) == 0

    assert capsys.readouterr().out.splitlines()[-1] == "already processed"
    assert len(server.received) == 1


def test_each_send_is_a_new_event(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["send", server.url, "--user", USER, "--password", PASSWORD]

    assert main(argv) == 0
    assert main(argv) == 0

    assert len({bounce.key for bounce in server.received}) == 2


@pytest.mark.parametrize(
    ("options", "status", "answer", "kind"),
    [
        (["--type", "SoftBounce"], 0, "accepted", BounceKind.SOFT),
        (["--record-type", "SpamComplaint"], 0, "accepted", BounceKind.COMPLAINT),
        (["--record-type", "SubscriptionChange"], 0, "accepted", BounceKind.HARD),
        (["--record-type", "Legacy", "--type", "Transient"], 0, "accepted", BounceKind.SOFT),
        (["--record-type", "Delivery"], 0, "ignored", None),
        (["--record-type", "Inbound"], 1, "inbound e-mail", None),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_send_record_shapes(
    server: Server,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    status: int,
    answer: str,
    kind: BounceKind | None,
) -> None:
    argv = ["send", server.url, "--user", USER, "--password", PASSWORD, "--email", "b@example.com"]

    assert main([*argv, *options]) == status

    assert answer in capsys.readouterr().out
    assert [(b.kind, b.email) for b in server.received] == (
        [(kind, "b@example.com")] if kind else []
    )


def test_send_to_a_closed_port_says_no_server_is_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Bound but not listening: the port stays ours and every connection is refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://{USER}:secret-in-url@127.0.0.1:{sock.getsockname()[1]}{PATH}"

        status = main(["send", url])

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("bounce-middleware send: error: connection refused: no server is running")
    assert url.replace(f"{USER}:secret-in-url@", "") in err
    assert "secret-in-url" not in err
    assert "Traceback" not in err


def test_send_to_a_server_that_never_answers_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # the kernel accepts the connection; nobody ever answers
        url = f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"

        status = main(["send", url, "--user", "u", "--password", "p", "--timeout", "0.2"])

    assert status == 2
    assert "no answer from" in capsys.readouterr().err


@pytest.mark.parametrize("reset", [False, True], ids=["hangs-up", "resets"])
def test_send_to_something_that_is_not_http(
    capsys: pytest.CaptureFixture[str], reset: bool
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.settimeout(DEADLINE)

        def hang_up() -> None:
            connection, _ = sock.accept()
            connection.recv(1024)
            if reset:  # close at once with a RST, as a peer with unread data does
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

        peer = threading.Thread(target=hang_up)
        peer.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"
        status = main(["send", url, "--user", "u", "--password", "p"])
        peer.join(DEADLINE)

    assert status == 2
    assert "did not answer with HTTP" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["send", "http://127.0.0.1:9/x", "--user", "u"], "no password"),
        (["send", "http://127.0.0.1:9/x", "--password", "p"], "no user name"),
        (["send", "ftp://u:p@127.0.0.1/x"], "URL must look like"),
        (["send", "http://u:p@127.0.0.1:99999/x"], "port"),
        (["send", "http://u:p@h/x", "--record-type", "Delivery", "--type", "HardBounce"], "--type"),
        (["send", "http://u:p@h/x", "--record-type", "Open", "--id", "3"], "--id"),
        (["send", "http://u:p@h/x", "--timeout", "0"], "--timeout"),
        (["send", "http://u:p@h/x", "--type", "NoSuchType"], "invalid choice"),
        (["list"], "no store"),
        (["list", "--store", "sqlite:///no/such/file.sqlite3"], "no store file"),
        (["list", "--store", "mysql://db/x"], "unsupported store URL"),
        (["list", "--store", "memory://", "--limit", "-1"], "expected 0 or more"),
        (["list", "--store", "memory://", "--rejected", "--kind", "hard"], "has neither"),
        (["list", "--app", "tests.test_cli:not_found"], "no BounceMiddleware"),
        (["replay", "--store", "memory://", "--app", "no_such_module:app"], "cannot import"),
        (["replay", "--store", "memory://", "--app", "tests.test_cli:not_found"], "no Bounce"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("BOUNCE_USER", "BOUNCE_PASSWORD", "BOUNCE_STORE"):
        monkeypatch.delenv(name, raising=False)

    assert main(argv) == 2

    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--help"]) == 0
    assert "BOUNCE_PASSWORD" in capsys.readouterr().out


# -- send to something that is not the middleware ---------------------------------------------

HTML_404 = "<!doctype html><html><body>" + "<p>Page not found</p>\n" * 80 + "</body></html>"


def html_site(environ: Any, start_response: Any) -> list[bytes]:
    """An application behind the middleware: a whole HTML page for anything it is asked."""
    path = environ["PATH_INFO"]
    if path.startswith("/moved"):
        start_response("301 Moved Permanently", [("Location", "https://example.com" + PATH)])
        return [b""]
    if path.startswith("/spa/"):  # a single-page app's catch-all route
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<!doctype html><html><body><div id=app></div></body></html>"]
    start_response("404 Not Found", [("Content-Type", "text/html; charset=utf-8")])
    return [HTML_404.encode()]


@pytest.fixture
def site_url() -> Iterator[str]:
    """The middleware (on PATH) around ``html_site``, served on 127.0.0.1: ``http://host:port``."""
    app = BounceMiddleware(
        html_site, path=PATH, credentials=[f"{USER}:{PASSWORD}"], store=MemoryStore()
    )
    http_server = StopableWSGIServer.create(app, host="127.0.0.1", port=0)
    try:
        yield f"http://127.0.0.1:{http_server.getsockname()[1]}"
    finally:
        http_server.shutdown()


@pytest.mark.parametrize(
    ("path", "status", "advice"),
    [
        (PATH + "/", "404 Not Found", f"try {PATH}, without the trailing slash"),
        ("/hooks/postmark", "404 Not Found", f"the demo and the examples use {PATH}"),
        ("/spa" + PATH, "200 OK", "check the path your middleware is configured with"),
        (
            "/moved",
            "301 Moved Permanently",
            f"a redirect to https://example.com{PATH}, not followed",
        ),
    ],
    ids=["trailing-slash", "other-path", "catch-all-200", "redirect"],
)
def test_send_to_a_path_the_middleware_does_not_answer_prints_the_status_and_one_line(
    site_url: str, capsys: pytest.CaptureFixture[str], path: str, status: str, advice: str
) -> None:
    code = main(["send", site_url + path, "--user", USER, "--password", PASSWORD])

    post, shown, line = capsys.readouterr().out.splitlines()  # and nothing else: no HTML page
    assert code == 1  # even for the catch-all's 200: the webhook went nowhere
    assert post.startswith(f"POST {site_url}{path}  (HardBounce for john@example.com, ID ")
    assert shown == status
    assert advice in line
    if not path.startswith("/moved"):
        assert line.startswith("not bounce-middleware's answer: the application (or a proxy)")
        assert f"answered the POST to {path} itself" in line
        assert "answers only its exact configured path" in line


def test_send_to_the_right_path_of_the_same_site_still_prints_the_answer(
    site_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", site_url + PATH, "--user", USER, "--password", PASSWORD]) == 0

    assert capsys.readouterr().out.splitlines()[1:] == ["200 OK", "accepted"]


# -- packaging -------------------------------------------------------------------------------


def test_the_sample_types_are_the_parsers_types() -> None:
    assert set(samples.POSTMARK_TYPES) == set(TYPE_KINDS)


def test_the_testing_module_re_exports_the_samples_for_users_tests() -> None:
    from bounce_middleware.samples import (
        amazon_ses,
        brevo,
        mailgun,
        mailjet,
        mandrill,
        resend,
        sendgrid,
        sparkpost,
    )

    # Each provider's signer is sign_request in its own samples module; testing names
    # them apart (sign_sendgrid_request...), and the TEST keys by provider.
    renamed = {
        "sign_sendgrid_request": sendgrid.sign_request,
        "sign_mailgun_request": mailgun.sign_request,
        "sign_ses_request": amazon_ses.sign_request,
        "sns_test_fetcher": amazon_ses.test_fetcher,
        "SENDGRID_TEST_PUBLIC_KEY": sendgrid.TEST_PUBLIC_KEY,
        "SENDGRID_TEST_PRIVATE_KEY_PEM": sendgrid.TEST_PRIVATE_KEY_PEM,
        "sign_resend_request": resend.sign_request,
        "SPARKPOST_PING": sparkpost.PING,
        "sign_mandrill_request": mandrill.sign_request,
    }
    modules = (samples, sendgrid, mailgun, amazon_ses, mailjet, sparkpost, brevo, resend, mandrill)
    for name in testing.__all__:
        if name == "auth_headers":
            continue
        value = getattr(testing, name)
        if name in renamed:
            assert value is renamed[name], name
        else:
            assert any(getattr(m, name, None) is value for m in modules), name
    assert testing.auth_headers("u", "p") == {"Authorization": "Basic dTpw"}


def test_importing_the_cli_imports_neither_testing_nor_sqlite3_nor_webob() -> None:
    # The console script starts with this import, before any command runs; only `demo`
    # (and `list` of a SQLite file) needs sqlite3, only the demo site WebOb.
    script = "import sys, bounce_middleware.cli; print(sorted(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=DEADLINE
    )

    loaded = result.stdout
    assert "'bounce_middleware.cli.replay'" in loaded
    for module in ("bounce_middleware.testing", "sqlite3", "webob", "bounce_middleware.demo"):
        assert f"'{module}'" not in loaded


def test_python_dash_m_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bounce_middleware.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("bounce-middleware ")


@pytest.mark.parametrize(
    "url", ["htps://postmark:Top-Secret-Passw0rd@example.com/x", "postmark:Top-Secret-Passw0rd@x"]
)
def test_a_malformed_url_is_refused_without_echoing_its_password(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", url]) == 2
    err = capsys.readouterr().err
    assert "URL must look like" in err
    assert "Top-Secret-Passw0rd" not in err
