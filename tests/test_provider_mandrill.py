"""Mandrill: the published vectors, the signature over the URL, the HEAD and empty checks,
and the configuration. Events: ``tests/test_provider_mandrill_events.py``.

Bodies are built here from the facts of providers.md ("Mandrill") and signed
with the recipe written out below (hmac directly), not with the library's signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest

from bounce_middleware import BounceKind, ConfigurationError, PayloadError, Unauthorized
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.mandrill import Mandrill, parse_mandrill
from bounce_middleware.request import WebhookRequest, post

KEY = "mandrill-webhook-key-for-tests"
URL = "https://example.com/hooks/mandrill"
PATH = "/hooks/mandrill"

# The published "Send Test" capture (providers.md, "Mandrill"; corpus mandrill/01).
PUBLISHED_KEY = "NBY4GGopxF5JPM8NCU7Blg"
PUBLISHED_URL = "http://requestb.in/o1m6loo1"
PUBLISHED_SIGNATURE = "ofCAuCdks9Lyr3RvSM61vpNR6UY="
# Symfony's empty-check vector, signed with Mandrill's public test key.
EMPTY_CHECK_URL = "http://localhost/"
EMPTY_CHECK_SIGNATURE = "QANhYzyeonX51wyzKImgnLZ27CE="


def recipe(key: str, url: str, fields: dict[str, str]) -> str:
    """providers.md: base64 HMAC-SHA1 of the URL, then every name + value sorted by name."""
    data = url + "".join(name + fields[name] for name in sorted(fields))
    return base64.b64encode(hmac.new(key.encode(), data.encode(), hashlib.sha1).digest()).decode()


def signed(
    value: str, *, key: str = KEY, url: str = URL, request_url: str = URL, method: str = "POST"
) -> WebhookRequest:
    """``mandrill_events=value`` signed over ``url``, arriving at ``request_url``."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Mandrill-Signature": recipe(key, url, {"mandrill_events": value}),
    }
    request = post(PATH, urlencode({"mandrill_events": value}).encode(), headers, request_url)
    return WebhookRequest(method, request.path, request.headers, request.body, request.url)


def events_json(*events: dict[str, Any]) -> str:
    return json.dumps(list(events), separators=(",", ":"))


def send_test_events() -> list[dict[str, Any]]:
    """Mandrill's "Send Test" batch as its dashboard posted it (providers.md, corpus 01).

    Four example messages, ids ``example`` + 25 ``a`` (+ a digit), sent at
    1365109999 and reported at 1446357425; bounces carry no opens/clicks.
    """
    base_id = "example" + "a" * 25

    def example(event: str, n: int, state: str, engaged: bool, **extra: Any) -> dict[str, Any]:
        message_id = base_id + (str(n) if n else "")
        msg: dict[str, Any] = {
            "ts": 1365109999,
            "subject": "This an example webhook message",
            "email": "example.webhook@mandrillapp.com",
            "sender": "example.sender@mandrillapp.com",
            "tags": ["webhook-example"],
        }
        if engaged:
            msg |= {"opens": [], "clicks": []}
        msg |= {"state": state, "metadata": {"user_id": 111}, "_id": message_id}
        msg |= {"_version": "example" + "a" * 15, **extra}
        return {"event": event, "msg": msg, "_id": message_id, "ts": 1446357425}

    deferred = {
        "destination_ip": "127.0.0.1",
        "diag": "451 4.3.5 Temporarily unavailable, try again later.",
        "source_ip": "127.0.0.1",
        "ts": 1365111111,
        "type": "deferred",
        "size": 0,
    }
    no_such_user = (
        "smtp;550 5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos or unnecessary spaces."
    )
    return [
        example("send", 0, "sent", True),
        example("deferral", 1, "deferred", True, smtp_events=[deferred]),
        example("hard_bounce", 2, "bounced", False, bounce_description="bad_mailbox",
                bgtools_code=10, diag=no_such_user),
        example("soft_bounce", 3, "soft-bounced", False, bounce_description="mailbox_full",
                bgtools_code=22, diag="smtp;552 5.2.2 Over Quota"),
    ]  # fmt: skip


def message_event(name: str = "hard_bounce", **fields: Any) -> dict[str, Any]:
    """A message event as Mandrill's webhook format lists its fields."""
    extra = fields.pop("msg", {})
    msg = {
        "ts": 1700000000,
        "subject": "Your order",
        "email": "ann@example.com",
        "sender": "shop@example.com",
        "tags": ["orders"],
        "state": "bounced",
        "metadata": {"user_id": "17"},
        "_id": "0123456789abcdef0123456789abcdef",
        "bounce_description": "bad_mailbox",
        "bgtools_code": 10,
        "diag": "smtp;550 5.1.1 mailbox unknown",
    }
    data = {
        "event": name,
        "msg": None if extra is None else msg | extra,
        "_id": msg["_id"],
        "ts": 1700000060,
    }
    data |= fields
    return {k: v for k, v in data.items() if v is not None}


def sync_event(list_name: str = "blacklist", action: str = "add", **fields: Any) -> dict[str, Any]:
    reject = {
        "reason": "hard-bounce",
        "detail": " smtp;550 5.1.1 mailbox unknown",
        "last_event_at": "2023-11-14 22:13:20",
        "email": "bob@example.com",
        "created_at": "2023-11-14 22:13:20",
        "expires_at": "2023-12-14 22:13:20",
        "expired": False,
        "subaccount": None,
        "sender": None,
    }
    extra = fields.pop("reject", {})
    data = {
        "type": list_name,
        "action": action,
        "reject": None if extra is None else reject | extra,
        "ts": 1700000100,
    }
    return {k: v for k, v in (data | fields).items() if v is not None}


def parse(*events: Any) -> Parsed:
    return parse_mandrill(urlencode({"mandrill_events": events_json(*events)}).encode())


# -- the published vectors ------------------------------------------------------------------


def test_the_published_send_test_capture_verifies_and_parses_to_its_four_events() -> None:
    value = events_json(*send_test_events())
    assert recipe(PUBLISHED_KEY, PUBLISHED_URL, {"mandrill_events": value}) == PUBLISHED_SIGNATURE
    body = ("mandrill_events=" + quote_plus(value)).encode()
    assert len(body) == 2935  # the capture's Content-Length
    provider = Mandrill(key=PUBLISHED_KEY, url=PUBLISHED_URL)
    headers = {"X-Mandrill-Signature": PUBLISHED_SIGNATURE}
    # The capture was posted to requestb.in; the URL this server sees is another.
    request = post(PATH, body, headers, "http://10.0.0.7:8000/hooks/mandrill")
    provider.authenticate(request)
    parsed = provider.parse(request)
    assert parsed.acknowledged == ("send",)
    assert [(b.type, b.kind) for b in parsed.events] == [
        ("deferral", BounceKind.SOFT),
        ("hard_bounce", BounceKind.HARD),
        ("soft_bounce", BounceKind.SOFT),
    ]
    deferral, hard, soft = parsed.events
    assert {b.email for b in parsed.events} == {"example.webhook@mandrillapp.com"}
    assert hard.bounced_at == datetime(2015, 11, 1, 5, 57, 5, tzinfo=UTC)  # ts, not msg.ts
    assert hard.message_id == "example" + "a" * 25 + "2"
    assert hard.details.startswith("smtp;550 5.1.1 The email account")
    assert hard.smtp_status == "5.1.1"
    assert deferral.details == "451 4.3.5 Temporarily unavailable, try again later."
    assert deferral.smtp_status == "4.3.5"
    assert "keeps trying" in deferral.description  # non-final
    assert (soft.details, soft.smtp_status) == ("smtp;552 5.2.2 Over Quota", "5.2.2")
    assert hard.tags == ("webhook-example",)
    assert dict(hard.metadata) == {"user_id": "111"}  # a number, given as its JSON text
    assert hard.id is None and hard.key.startswith("mandrill:dedup-sha256:")


def test_the_published_empty_check_is_signed_with_the_public_test_key() -> None:
    fields = {"mandrill_events": "[]"}
    assert recipe("test-webhook", EMPTY_CHECK_URL, fields) == EMPTY_CHECK_SIGNATURE
    provider = Mandrill(key=KEY, url=EMPTY_CHECK_URL)
    request = post(PATH, b"mandrill_events=%5B%5D", {"X-Mandrill-Signature": EMPTY_CHECK_SIGNATURE})
    provider.authenticate(request)
    assert provider.parse(request) == Parsed(handshake="empty batch: Mandrill's webhook check")


def test_the_empty_check_signed_with_the_configured_key_is_a_handshake_too() -> None:
    request = signed("[ ]")
    Mandrill(key=KEY, url=URL).authenticate(request)
    assert Mandrill(key=KEY, url=URL).parse(request).handshake


@pytest.mark.parametrize(
    "value", [events_json(message_event()), events_json({"event": "send"}), "[{}]", "[null]"]
)
def test_the_public_test_key_is_refused_for_anything_but_the_empty_batch(value: str) -> None:
    with pytest.raises(Unauthorized, match="does not match any configured key"):
        Mandrill(key=KEY, url=URL).authenticate(signed(value, key="test-webhook"))


def test_the_public_test_key_is_refused_for_an_empty_batch_with_another_field() -> None:
    fields = {"mandrill_events": "[]", "extra": "x"}
    headers = {"X-Mandrill-Signature": recipe("test-webhook", URL, fields)}
    request = post(PATH, urlencode(fields).encode(), headers, URL)
    with pytest.raises(Unauthorized, match="does not match"):
        Mandrill(key=KEY, url=URL).authenticate(request)


# -- authentication -------------------------------------------------------------------------


def test_a_head_passes_unsigned_and_is_a_handshake() -> None:
    provider = Mandrill(key=KEY)
    head = WebhookRequest("HEAD", PATH, url=URL)
    provider.check_headers(head)
    provider.authenticate(head)
    assert provider.parse(head) == Parsed(handshake="Mandrill's webhook URL check")
    assert provider.methods == frozenset({"POST", "HEAD"})


def test_the_configured_url_is_signed_whatever_url_the_request_arrived_at() -> None:
    value = events_json(message_event())
    behind_proxy = "http://127.0.0.1:8000/hooks/mandrill"
    request = signed(value, url=URL, request_url=behind_proxy)
    Mandrill(key=KEY, url=URL).authenticate(request)
    with pytest.raises(Unauthorized, match="set url= to the URL entered in Mandrill"):
        Mandrill(key=KEY).authenticate(signed(value, url=URL, request_url=behind_proxy))
    # Without url=, the request's own URL is what must have been signed.
    Mandrill(key=KEY).authenticate(signed(value, url=behind_proxy, request_url=behind_proxy))
    # With url=, a request signed over its own URL is not Mandrill's.
    with pytest.raises(Unauthorized) as refused:
        Mandrill(key=KEY, url=URL).authenticate(
            signed(value, url=behind_proxy, request_url=behind_proxy)
        )
    assert "url=" not in refused.value.reason


@pytest.mark.parametrize(
    ("url", "signed_url"),
    [
        (URL, URL + "/"),
        (URL, URL.replace("https", "http")),
        (URL, URL + "?a=1"),
        (URL, "https://example.com:443/hooks/mandrill"),
        ("https://user:pw@example.com/hooks/mandrill", URL),
    ],
)
def test_the_url_is_signed_character_for_character(url: str, signed_url: str) -> None:
    with pytest.raises(Unauthorized, match="does not match"):
        Mandrill(key=KEY, url=url).authenticate(signed("[]", url=signed_url))
    Mandrill(key=KEY, url=signed_url).authenticate(signed("[]", url=signed_url))


def test_every_key_of_a_rotation_is_accepted() -> None:
    provider = Mandrill(key="old-key  new-key\n")
    assert provider.keys == (b"old-key", b"new-key")
    for key in ("old-key", "new-key"):
        provider.authenticate(signed(events_json(message_event()), key=key))
    with pytest.raises(Unauthorized):
        provider.authenticate(signed(events_json(message_event()), key="retired-key"))
    assert Mandrill(key=["a-key\n", "b-key"]).keys == (b"a-key", b"b-key")


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"mandrill_events=%5B%5D", {}, "missing X-Mandrill-Signature header"),
        (b"mandrill_events=%5B%5D", {"X-Mandrill-Signature": "not base64!"}, "not base64"),
        (b"mandrill_events=%FF", {"X-Mandrill-Signature": "AAAA"}, "not a UTF-8 form"),
        (b"\xff", {"X-Mandrill-Signature": "AAAA"}, "not a UTF-8 form"),
        (b'[{"event":"hard_bounce"}]', {"X-Mandrill-Signature": "AAAA"}, "body is not a form"),
        (b"mandrill_events=%5B%5D&", {"X-Mandrill-Signature": "AAAA"}, "body is not a form"),
        (b"&".join(b"f%d=1" % n for n in range(30)), {"X-Mandrill-Signature": "A"}, "not a form"),
        (
            b"mandrill_events=%5B%5D&mandrill_events=%5B%5D",
            {"X-Mandrill-Signature": "AAAA"},
            "a form field appears more than once",
        ),
    ],
)
def test_requests_that_cannot_be_verified_are_unauthorized(
    body: bytes, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Unauthorized, match=reason):
        Mandrill(key=KEY, url=URL).authenticate(post(PATH, body, headers, URL))


def test_a_field_given_twice_is_refused_even_when_one_copy_is_signed() -> None:
    good = events_json(message_event())
    headers = {"X-Mandrill-Signature": recipe(KEY, URL, {"mandrill_events": good})}
    forged = urlencode([("mandrill_events", good), ("mandrill_events", "[]")]).encode()
    with pytest.raises(Unauthorized, match="more than once"):
        Mandrill(key=KEY, url=URL).authenticate(post(PATH, forged, headers, URL))
    with pytest.raises(PayloadError, match="more than once"):
        parse_mandrill(forged)


def test_check_headers_refuses_a_post_without_a_signature_before_the_body() -> None:
    provider = Mandrill(key=KEY, url=URL)
    with pytest.raises(Unauthorized, match="missing X-Mandrill-Signature"):
        provider.check_headers(post(PATH, b"", {"X-Mandrill-Signature": "  "}))
    provider.check_headers(post(PATH, b"", {"X-Mandrill-Signature": "AAAA"}))


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   ", [], [""], ["a", 3]])
def test_no_usable_key_is_a_configuration_error(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="Mandrill webhook key"):
        Mandrill(key=key)


@pytest.mark.parametrize("key", ["test-webhook", ["real-key", "test-webhook"]])
def test_the_public_test_key_cannot_be_configured(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="public test key"):
        Mandrill(key=key)


@pytest.mark.parametrize(
    "url",
    [
        "/hooks/mandrill",
        "example.com/hooks/mandrill",
        "ftp://example.com/hooks/mandrill",
        "https:///hooks/mandrill",
        "https://example.com/hooks mandrill",
        "https://example.com/\x00",
        "https://example.com:0/",
        "https://example.com:99999/",
        "https://[::1/",
        b"https://example.com/",
        "",
    ],
)
def test_a_url_that_is_no_absolute_http_url_is_a_configuration_error(url: Any) -> None:
    with pytest.raises(ConfigurationError, match="Mandrill url") as error:
        Mandrill(key=KEY, url=url)
    assert "secret" not in str(error.value)  # a URL may hold user:password@


def test_the_url_is_kept_as_given_but_for_surrounding_whitespace() -> None:
    given = "HTTPS://Example.COM:8443/Hooks/Mandrill/?route=1"
    assert Mandrill(key=KEY, url=f" {given}\n").url == given
    assert Mandrill(key=KEY).url is None
    assert dict(Mandrill.options) == {"key": "list", "url": "str"}
