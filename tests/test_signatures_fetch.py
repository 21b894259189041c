"""The default HTTPS fetcher, against a local TLS server made here (never the network)."""

from __future__ import annotations

import http.server
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bounce_middleware.signatures import FetchError, fetch_https

from .signatures.selfmade import certificate_pem, private_key_pem, rsa_key

CERTIFICATE = certificate_pem(rsa_key(2), common_name="127.0.0.1", ip="127.0.0.1")
BODY = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"


class Handler(http.server.BaseHTTPRequestHandler):
    requested: list[str]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.requested.append(self.path)
        if self.path == "/cert.pem":
            self.answer(200, BODY)
        elif self.path == "/redirect.pem":
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/big.pem":
            self.answer(200, b"x" * 70_000)
        elif self.path == "/slow.pem":
            time.sleep(1.0)
            self.answer(200, BODY)
        elif self.path == "/trickle.pem":
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self.answer(404, b"not found")

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up (timeouts, size cap) is expected here


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[str]]]:
    requested: list[str] = []
    handler = type("RecordingHandler", (Handler,), {"requested": requested})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert.write_bytes(CERTIFICATE)
        key.write_bytes(private_key_pem(rsa_key(2)))
        context.load_cert_chain(cert, key)
    httpd = Server(("127.0.0.1", 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", requested
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def trusting() -> ssl.SSLContext:
    """A client context that trusts the local server's self-made certificate only."""
    return ssl.create_default_context(cadata=CERTIFICATE.decode())


def test_a_200_answer_is_returned(server: tuple[str, list[str]], trusting: ssl.SSLContext) -> None:
    base, _ = server
    assert fetch_https(base + "/cert.pem", context=trusting) == BODY


def test_a_redirect_is_not_followed(
    server: tuple[str, list[str]], trusting: ssl.SSLContext
) -> None:
    base, requested = server
    requested.clear()
    with pytest.raises(FetchError, match="^the server answered HTTP 302$"):
        fetch_https(base + "/redirect.pem", context=trusting)
    assert requested == ["/redirect.pem"]  # the target was never asked for


def test_an_error_status_is_a_fetch_error(
    server: tuple[str, list[str]], trusting: ssl.SSLContext
) -> None:
    base, _ = server
    with pytest.raises(FetchError, match="^the server answered HTTP 404$"):
        fetch_https(base + "/missing.pem", context=trusting)


def test_an_answer_over_the_size_cap_is_refused(
    server: tuple[str, list[str]], trusting: ssl.SSLContext
) -> None:
    base, _ = server
    with pytest.raises(FetchError, match="^answer larger than 65536 bytes$"):
        fetch_https(base + "/big.pem", context=trusting)
    assert len(fetch_https(base + "/big.pem", context=trusting, max_bytes=80_000)) == 70_000


def test_a_server_slower_than_the_timeout_is_a_fetch_error(
    server: tuple[str, list[str]], trusting: ssl.SSLContext
) -> None:
    base, _ = server
    with pytest.raises(FetchError, match="^fetching failed: TimeoutError$"):
        fetch_https(base + "/slow.pem", context=trusting, timeout=0.2)


def test_a_trickling_server_is_cut_off_by_the_overall_deadline(
    server: tuple[str, list[str]], trusting: ssl.SSLContext
) -> None:
    base, _ = server
    # Each byte arrives well within the per-read timeout; the whole takes 2 s.
    with pytest.raises(FetchError, match="^download took longer than the timeout$"):
        fetch_https(base + "/trickle.pem", context=trusting, timeout=0.3)


def test_an_untrusted_certificate_is_a_fetch_error(server: tuple[str, list[str]]) -> None:
    base, _ = server
    # The system trust store does not know the self-made certificate.
    with pytest.raises(FetchError, match="^fetching failed: SSLCertVerificationError$"):
        fetch_https(base + "/cert.pem")


def test_only_https_urls_are_fetched() -> None:
    with pytest.raises(ValueError, match="https:// URLs only"):
        fetch_https("http://127.0.0.1:9/cert.pem")


def test_a_refused_connection_is_a_fetch_error(trusting: ssl.SSLContext) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match="^fetching failed: ConnectionRefusedError$"):
        fetch_https(f"https://127.0.0.1:{port}/cert.pem", context=trusting, timeout=2)
