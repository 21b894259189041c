"""The example site, run as its README says: migrate, runserver, ``bounce-middleware send``.

It also covers Django's stock ``auth.User`` (the rest of the suite uses a
custom user model, and ``AUTH_USER_MODEL`` cannot change within one process).
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parent.parent / "examples" / "django_site"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(port: int, server: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError("the example server exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the example server did not start")


MANAGE = [sys.executable, "manage.py"]
#: The system check that warns about the example's published webhook password.
WEAK_CREDENTIAL = "bounce_middleware.W004"


def site_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SITE_DB": str(tmp_path / "db.sqlite3"), **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def manage(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MANAGE, *command], cwd=SITE, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The example site migrated into a fresh database and served by ``runserver``."""
    env = site_env(tmp_path)
    migrated = manage(env, "migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    with subprocess.Popen(
        [*MANAGE, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=SITE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        try:
            wait_for(port, server)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=10)


def send(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The README's command."""
    command = [
        sys.executable,
        "-c",
        "import sys; from bounce_middleware.cli import main; sys.exit(main())",
        "send",
        url,
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


class Browser:
    """Just enough of a browser: cookies, forms with a CSRF token, redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return str(response.read().decode())

    def submit(self, path: str, fields: dict[str, str], page: str | None = None) -> str:
        """Fill in the form of ``page`` (by default: GET ``path`` now) and post it."""
        page = self.get(path) if page is None else page
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token[1]}).encode()
        with self.opener.open(self.base + path, data, timeout=10) as response:
            return str(response.read().decode())


def notices(page: str) -> list[str]:
    return re.findall(r'<li class="warning">(.*?)</li>', page, re.S)


def test_readme_flow(site: str) -> None:
    result = send(
        f"{site}/postmark/bounce",
        "--user",
        "postmark",
        "--password",
        "s3cret",
        "--email",
        "Demo@Example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr

    browser = Browser(site)
    assert notices(browser.get("/")) == []
    page = browser.submit("/login/", {"username": "demo", "password": "demo"})
    [notice] = notices(page)
    assert "Demo@Example.com" in notice
    assert '<a href="/account/">' in notice
    assert notices(browser.get("/")) == []

    wrong = send(f"{site}/postmark/bounce", "--user", "postmark", "--password", "nope")
    assert wrong.returncode == 1


def send_bounce(site: str, email: str) -> None:
    result = send(
        f"{site}/postmark/bounce", "--user", "postmark", "--password", "s3cret", "--email", email
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_changing_the_address_on_an_open_page_shows_no_notice(site: str) -> None:
    # The README: open "My address", send another bounce, save a new address there:
    # the page after saving shows no notice (a POST shows none, and the address changed).
    browser = Browser(site)
    browser.submit("/login/", {"username": "demo", "password": "demo"})
    account = browser.get("/account/")  # opened before the bounce comes
    assert notices(account) == []
    send_bounce(site, "demo@example.com")
    page = browser.submit("/account/", {"email": "demo@new.example.com"}, page=account)
    assert notices(page) == []
    assert "Your e-mail address was updated." in page
    assert notices(browser.get("/")) == []


def test_readme_opening_any_page_before_saving_shows_the_notice(site: str) -> None:
    # ...and what the README says happens otherwise: a page view (GET), even of
    # "My address" itself, shows the notice while the address is the one that bounced.
    browser = Browser(site)
    browser.submit("/login/", {"username": "demo", "password": "demo"})
    send_bounce(site, "demo@example.com")
    [notice] = notices(browser.get("/account/"))
    assert "demo@example.com" in notice


def test_the_example_warns_about_its_published_password(tmp_path: Path) -> None:
    default = manage(site_env(tmp_path), "check")
    assert default.returncode == 0, default.stderr
    assert WEAK_CREDENTIAL in default.stderr
    strong = site_env(tmp_path, BOUNCE_CREDENTIALS="postmark:a-long-random-password-of-mine")
    checked = manage(strong, "check", "--fail-level", "WARNING")
    assert checked.returncode == 0, checked.stderr
    assert WEAK_CREDENTIAL not in checked.stderr
