"""The SendGrid provider itself: the protocol, its settings, failing closed, the extra."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bounce_middleware import BounceMiddleware, ConfigurationError
from bounce_middleware.errors import Unauthorized
from bounce_middleware.providers import Provider
from bounce_middleware.providers.sendgrid import SendGrid, parse_sendgrid
from bounce_middleware.request import post
from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY, sendgrid_event, sign_request
from tests.signatures.selfmade import ec_key, sendgrid_ui_key
from tests.store_apps import downstream

# -- the provider ---------------------------------------------------------------------------


def test_it_keeps_the_provider_protocol() -> None:
    provider = SendGrid(public_key=TEST_PUBLIC_KEY)
    assert isinstance(provider, Provider)
    assert (provider.name, provider.methods, provider.refuse_status) == (
        "sendgrid",
        frozenset({"POST"}),
        400,
    )
    assert provider.retry_status is None
    assert dict(SendGrid.options) == {
        "public_key": "list",
        "credentials": "credentials",
        "realm": "str",
        "max_age": "float",
    }
    event = sendgrid_event()
    headers, data = sign_request([event])
    request = post("/hooks/sendgrid", data, headers)
    provider.authenticate(request)
    assert provider.parse(request) == parse_sendgrid(json.dumps([event]).encode())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no public_key"),
        ({"public_key": None, "credentials": None}, "no public_key"),
        ({"public_key": ""}, "public_key is empty"),
        ({"public_key": []}, "no SendGrid public key configured"),
        ({"public_key": "not a key"}, "is not the base64 key SendGrid shows"),
        ({"credentials": []}, "no credentials configured"),
        ({"credentials": ["no-colon"]}, 'must be "user:password"'),
        ({"public_key": TEST_PUBLIC_KEY, "max_age": 0}, "max_age must be a positive number"),
        ({"public_key": TEST_PUBLIC_KEY, "max_age": float("inf")}, "max_age must be"),
        ({"public_key": TEST_PUBLIC_KEY, "max_age": "60"}, "max_age must be"),
    ],
)
def test_it_fails_closed_when_built_without_a_usable_key_or_credential(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SendGrid(**kwargs)


def test_credentials_alone_check_basic_auth_and_no_signature() -> None:
    provider = SendGrid(credentials=["sendgrid:a-long-random-password"])
    with pytest.raises(Unauthorized) as caught:
        provider.authenticate(post("/", json.dumps([sendgrid_event()]).encode()))
    assert caught.value.challenge is not None and "Basic" in caught.value.challenge


def test_check_headers_needs_no_body_and_checks_only_basic_credentials() -> None:
    empty = post("/", b"")
    SendGrid(public_key=TEST_PUBLIC_KEY).check_headers(empty)  # the signature decides later
    with pytest.raises(Unauthorized) as caught:
        SendGrid(
            public_key=TEST_PUBLIC_KEY, credentials=["sendgrid:a-long-random-password"]
        ).check_headers(empty)
    assert caught.value.challenge is not None and "Basic" in caught.value.challenge


def test_without_cryptography_a_public_key_names_the_extra_and_credentials_still_work() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from bounce_middleware import ImproperlyInstalled\n"
        "from bounce_middleware.providers.sendgrid import SendGrid\n"
        "import bounce_middleware.samples.sendgrid, bounce_middleware.testing\n"
        "SendGrid(credentials=['sendgrid:a-long-random-password'])\n"
        "try:\n"
        "    SendGrid(public_key='MFkw')\n"
        "except ImproperlyInstalled as error:\n"
        "    assert error.extra == 'crypto', error.extra\n"
        "else:\n"
        "    raise AssertionError('no ImproperlyInstalled')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_importing_the_provider_and_its_samples_does_not_import_cryptography() -> None:
    code = (
        "import sys\n"
        "import bounce_middleware.providers.sendgrid, bounce_middleware.samples.sendgrid\n"
        "assert 'cryptography' not in sys.modules, 'cryptography imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_built_from_flat_settings_with_two_keys_while_rotating_and_credentials() -> None:
    app = BounceMiddleware.from_settings(
        downstream,
        {
            "bounce.routes": "/hooks/sendgrid sendgrid",
            "bounce.sendgrid.public_key": f"{sendgrid_ui_key(ec_key(1))}\n{TEST_PUBLIC_KEY}",
            "bounce.sendgrid.credentials": "sendgrid:a-long-random-password",
            "bounce.sendgrid.max_age": "3600",
        },
    )
    provider = app.routes["/hooks/sendgrid"]
    assert isinstance(provider, SendGrid)
    assert (len(provider.keys), provider.max_age, provider.basic is not None) == (2, 3600.0, True)


def test_a_route_configured_without_key_or_credentials_is_refused_by_the_settings() -> None:
    with pytest.raises(ConfigurationError, match="no public_key"):
        BounceMiddleware.from_settings(downstream, {"bounce.routes": "/hooks/sendgrid sendgrid"})
