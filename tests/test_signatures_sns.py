"""Amazon SNS signatures: canonical strings, certificate URLs, the certificate cache, v1 and v2.

Certificates are made here (self-signed, no CA) and served by an injected
fetcher: no test touches the network.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bounce_middleware import ConfigurationError
from bounce_middleware.signatures import (
    CertificateCache,
    FetchError,
    SignatureError,
    check_signing_cert_url,
    check_subscribe_url,
    sign_sns,
    sns_string_to_sign,
    verify_sns,
)

from .signatures.selfmade import certificate_pem, ec_key, rsa_key

FIXTURES = Path(__file__).parent / "signatures"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:bounces"
SES_BOUNCE = json.dumps(
    {
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@b.c"}]},
    }
)
TIMESTAMP = "2026-12-01T10:00:00.123Z"
NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp()

NOTIFICATION_KEYS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRMATION_KEYS = [
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
]


def recipe_string(message: dict[str, str]) -> bytes:
    """providers.md's recipe: ``key\\nvalue\\n`` for each signed key present, in order."""
    keys = NOTIFICATION_KEYS if message["Type"] == "Notification" else CONFIRMATION_KEYS
    return "".join(f"{k}\n{message[k]}\n" for k in keys if k in message).encode()


def signed(message: dict[str, str], key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
    """``message`` with the signature SNS would add, made with the recipe (not the library)."""
    key = key or rsa_key()
    digest = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
    raw = key.sign(recipe_string(message), padding.PKCS1v15(), digest)
    return message | {"Signature": base64.b64encode(raw).decode()}


def notification(version: str = "1", **fields: str) -> dict[str, str]:
    message = {
        "Type": "Notification",
        "MessageId": "5d4c7d2f-3f33-5f5e-9a0e-2c0f8a1b2c3d",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": SES_BOUNCE + "\n",
        "Timestamp": TIMESTAMP,
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&x=1",
    } | fields
    return signed(message)


def confirmation(kind: str = "SubscriptionConfirmation", version: str = "1") -> dict[str, str]:
    return signed(
        {
            "Type": kind,
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37f" * 8,
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
            "SubscribeURL": (
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                f"&TopicArn={TOPIC}&Token=2336412f37f"
            ),
            "Timestamp": TIMESTAMP,
            "SignatureVersion": version,
            "SigningCertURL": CERT_URL,
        }
    )


class Served:
    """An injected fetcher: serves PEM by URL and records what was asked for."""

    def __init__(self, pem: bytes | None = None, error: Exception | None = None) -> None:
        self.pem = pem if pem is not None else certificate_pem(rsa_key())
        self.error = error
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        if self.error is not None:
            raise self.error
        return self.pem


# -- the string to sign ----------------------------------------------------------------------


def test_notification_string_to_sign_has_subject_only_when_present() -> None:
    message = notification()
    assert sns_string_to_sign(message) == recipe_string(message)
    assert sns_string_to_sign(message).startswith(b"Message\n" + SES_BOUNCE.encode() + b"\n\n")
    without = {k: v for k, v in message.items() if k != "Subject"}
    assert b"Subject" not in sns_string_to_sign(without)
    # A null Subject counts as absent, as in AWS's PHP validator.
    assert sns_string_to_sign({**without, "Subject": None}) == sns_string_to_sign(without)


def test_confirmation_string_to_sign_matches_aws_layout() -> None:
    message = {
        "Type": "SubscriptionConfirmation",
        "Message": "My Test Message",
        "MessageId": "3d891288-136d-417f-bc05-901c108273ee",
        "SubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&Token=233",
        "Timestamp": "2019-01-31T19:25:13.719Z",
        "Token": "233",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "not signed on confirmations",
    }
    assert sns_string_to_sign(message) == (
        b"Message\nMy Test Message\n"
        b"MessageId\n3d891288-136d-417f-bc05-901c108273ee\n"
        b"SubscribeURL\nhttps://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&Token=233\n"
        b"Timestamp\n2019-01-31T19:25:13.719Z\n"
        b"Token\n233\n"
        b"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        b"Type\nSubscriptionConfirmation\n"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Type": "Notice"}, "Type is not an SNS message type"),
        ({"Type": None}, "Type is not an SNS message type"),
        ({"Message": None}, "SNS field Message is missing or not a string"),
        ({"TopicArn": 12}, "SNS field TopicArn is missing or not a string"),
        ({"Subject": 12}, "SNS field Subject is missing or not a string"),
        ({"Message": "\ud800"}, "SNS message is not valid Unicode"),
    ],
)
def test_string_to_sign_refuses_what_sns_never_sends(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        sns_string_to_sign(notification() | change)
    assert caught.value.reason == reason


# -- certificate and subscription URLs -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a86cb10b4e1f.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    ],
)
def test_signing_cert_urls_on_sns_hosts_are_accepted(url: str) -> None:
    assert check_signing_cert_url(url) == url


#: Real region names (AWS's region table), one of each shape.
REGIONS = [
    "us-east-1", "us-west-2", "eu-central-1", "eu-south-2", "ap-southeast-2", "ap-northeast-3",
    "us-gov-west-1", "us-gov-east-1", "me-south-1", "me-central-1", "il-central-1",
    "ca-west-1", "sa-east-1", "af-south-1", "mx-central-1",
]  # fmt: skip
#: Hosts AWS's validators' pattern (sns.[a-zA-Z0-9-]{3,}.amazonaws.com) accepts, named as
#: S3 and other services name hosts where someone else's content may be served.
NOT_REGIONS = [
    "s3-accelerate", "s3-us-west-2", "s3-website-us-east-1", "s3-external-1", "execute-api",
    "us-east-1-s3", "dualstack", "US-EAST-1", "us-east", "useast1", "us-east-1a",
]  # fmt: skip


@pytest.mark.parametrize("region", REGIONS)
def test_every_shape_of_region_name_is_accepted(region: str) -> None:
    url = f"https://sns.{region}.amazonaws.com/SimpleNotificationService-abc.pem"
    assert check_signing_cert_url(url) == url
    confirm = f"https://sns.{region}.amazonaws.com/?Action=ConfirmSubscription&Token=2"
    assert check_subscribe_url(confirm) == confirm


def test_china_regions_are_accepted_on_their_own_domain() -> None:
    for region in ("cn-north-1", "cn-northwest-1"):
        url = f"https://sns.{region}.amazonaws.com.cn/SimpleNotificationService-abc.pem"
        assert check_signing_cert_url(url) == url


@pytest.mark.parametrize("label", NOT_REGIONS)
def test_hosts_whose_label_is_no_region_are_refused(label: str) -> None:
    with pytest.raises(SignatureError, match="SigningCertURL is not"):
        check_signing_cert_url(f"https://sns.{label}.amazonaws.com/cert.pem")
    with pytest.raises(SignatureError, match="SubscribeURL is not"):
        check_subscribe_url(f"https://sns.{label}.amazonaws.com/?Action=ConfirmSubscription&T=2")


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",  # not https
        "HTTPS://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/cert.pem",  # lookalike suffix
        "https://sns.us-east-1.amazonaws.com.cn.evil.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com./cert.pem",  # trailing dot
        "https://evil.com/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/cert.pem",  # userinfo tricks
        "https://evil.com@sns.us-east-1.amazonaws.com/cert.pem",
        "https://evil.com\\@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:443/cert.pem",  # ports
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem?x=1",  # query, fragment
        "https://sns.us-east-1.amazonaws.com/cert.pem#x",
        "https://sns.us-east-1.amazonaws.com/cert.txt",  # not .pem
        "https://sns.us-east-1.amazonaws.com/a/../cert.pem",  # one path segment only
        "https://sns.us-east-1.amazonaws.com/%2e%2e.pem",
        "https://sns.us-east-1.amazon\naws.com/cert.pem",  # urlsplit would drop \n
        " https://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem\n",
        "https://sns.amazonaws.com/cert.pem",  # no region
        "https://sns.a.amazonaws.com/cert.pem",  # region too short for AWS's pattern
        "https://sqs.us-east-1.amazonaws.com/cert.pem",
        "https://xsns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us_east_1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.co/cert.pem",
        "https://sns.us-east-1.amazonaws.com",
        "",
        None,
        42,
    ],
)
def test_signing_cert_urls_anywhere_else_are_refused(url: object) -> None:
    with pytest.raises(SignatureError) as caught:
        check_signing_cert_url(url)
    assert caught.value.reason == "SigningCertURL is not an https .pem URL on an SNS host"


def test_subscribe_urls_are_checked_the_same_way() -> None:
    url = confirmation()["SubscribeURL"]
    assert check_subscribe_url(url) == url
    for bad in (
        url.replace("https://", "http://"),
        url.replace("amazonaws.com", "amazonaws.com.evil.com"),
        url.replace("ConfirmSubscription", "Unsubscribe"),
        url + "#fragment",
        url.replace("sns.us-east-1.amazonaws.com", "sns.us-east-1.amazonaws.com:8443"),
    ):
        with pytest.raises(SignatureError, match="SubscribeURL is not"):
            check_subscribe_url(bad)


# -- verifying -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(
    "kind", ["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
)
def test_v1_and_v2_signatures_verify_with_a_self_made_certificate(version: str, kind: str) -> None:
    message = notification(version) if kind == "Notification" else confirmation(kind, version)
    served = Served()
    verify_sns(message, CertificateCache(served))
    assert served.urls == [CERT_URL]


def test_notification_without_subject_verifies() -> None:
    message = notification()
    del message["Subject"]
    verify_sns(signed(message), CertificateCache(Served()))


def test_the_library_signer_agrees_with_the_recipe() -> None:
    for version in ("1", "2"):
        message = notification(version)
        assert sign_sns(rsa_key(), message) == signed(message)["Signature"]


def test_the_published_v1_vector_verifies() -> None:
    message = json.loads((FIXTURES / "sns-v1-published.json").read_text("utf-8"))
    pem = (FIXTURES / "sns-v1-published.cert.pem").read_bytes()
    served = Served(pem)
    verify_sns(message, CertificateCache(served))
    assert served.urls == [message["SigningCertURL"]]
    with pytest.raises(SignatureError, match="does not verify"):
        verify_sns(message | {"Token": message["Token"] + "0"}, CertificateCache(served))


def test_a_wrapped_base64_signature_still_verifies() -> None:
    message = notification()
    wrapped = "\n".join(message["Signature"][i : i + 60] for i in range(0, 344, 60))
    verify_sns(message | {"Signature": wrapped}, CertificateCache(Served()))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Message": SES_BOUNCE}, "SNS signature does not verify with its certificate"),
        ({"TopicArn": TOPIC + "-other"}, "SNS signature does not verify with its certificate"),
        ({"Subject": "changed"}, "SNS signature does not verify with its certificate"),
        ({"SignatureVersion": "2"}, "SNS signature does not verify with its certificate"),
        ({"Type": "SubscriptionConfirmation"}, "SNS field SubscribeURL is missing or not a string"),
        ({"SignatureVersion": "3"}, "SignatureVersion is not one this endpoint accepts"),
        ({"SignatureVersion": 1}, "SignatureVersion is not one this endpoint accepts"),
        ({"Signature": None}, "SNS field Signature is missing or not a string"),
        ({"Signature": "%%%"}, "SNS Signature is not base64"),
        ({"Signature": "QUJD"}, "SNS signature does not verify with its certificate"),
    ],
)
def test_tampered_and_malformed_messages_are_refused(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_sns(notification() | change, CertificateCache(Served()))
    assert caught.value.reason == reason


def test_a_certificate_for_another_key_refuses_the_signature() -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        verify_sns(notification(), CertificateCache(Served(certificate_pem(rsa_key(1)))))


def test_a_foreign_certificate_url_is_refused_before_any_fetch() -> None:
    served = Served()
    message = notification(SigningCertURL="https://sns.us-east-1.amazonaws.com.evil.com/c.pem")
    with pytest.raises(SignatureError, match="SigningCertURL is not"):
        verify_sns(message, CertificateCache(served))
    assert served.urls == []


def test_only_the_configured_versions_are_accepted() -> None:
    cache = CertificateCache(Served())
    verify_sns(notification("2"), cache, versions=("2",))
    with pytest.raises(SignatureError, match="SignatureVersion is not one this endpoint accepts"):
        verify_sns(notification("1"), cache, versions=("2",))


def test_a_fetch_failure_is_a_fetch_error_not_a_signature_error() -> None:
    # SNS counts a 4xx as delivered: a failure of ours must become a 503, never a 401.
    for error in (FetchError("fetching failed: TimeoutError"), ConnectionResetError("reset")):
        with pytest.raises(FetchError) as caught:
            verify_sns(notification(), CertificateCache(Served(error=error)))
        assert not isinstance(caught.value, SignatureError)


class ConnectError(Exception):
    """What httpx and urllib3 raise: no OSError."""


def test_any_exception_or_non_bytes_from_a_fetcher_is_a_fetch_error_naming_only_its_class() -> None:
    with pytest.raises(FetchError) as caught:
        verify_sns(notification(), CertificateCache(Served(error=ConnectError("token=s3cr3t"))))
    assert caught.value.reason == "fetching failed: ConnectError"
    pem = certificate_pem(rsa_key())
    for answer, reason in ((pem.decode(), "str"), (None, "NoneType")):

        def fetch(url: str, answer: object = answer) -> bytes:
            return answer  # type: ignore[return-value]  # what a careless fetcher returns

        with pytest.raises(FetchError) as caught:
            verify_sns(notification(), CertificateCache(fetch))
        assert caught.value.reason == f"the fetcher returned {reason}, not bytes"

    def fetch_bytearray(url: str) -> bytes:
        return bytearray(pem)  # type: ignore[return-value]  # bytes-like: accepted

    verify_sns(notification(), CertificateCache(fetch_bytearray))


def test_a_certificate_of_another_key_type_is_not_authentic() -> None:
    with pytest.raises(SignatureError) as caught:
        verify_sns(notification(), CertificateCache(Served(certificate_pem(ec_key()))))
    assert caught.value.reason == "SNS signing certificate does not hold an RSA key"


def test_an_answer_that_is_no_pem_is_a_fetch_failure() -> None:
    # Only AWS's hosts are asked, over HTTPS: an HTML page there is a proxy's error or a
    # broken transfer. A 401 would make SNS drop the message; a FetchError answers 503.
    with pytest.raises(FetchError) as caught:
        verify_sns(notification(), CertificateCache(Served(b"<html>Not Found</html>")))
    assert caught.value.reason == "SigningCertURL did not serve a PEM certificate"
    assert not isinstance(caught.value, SignatureError)


def test_the_timestamp_window_is_optional() -> None:
    cache = CertificateCache(Served())
    message = notification()
    verify_sns(message, cache, now=NOW + 10 * 365 * 86400)  # no window by default
    verify_sns(message, cache, max_age=3600, now=NOW + 3600)
    with pytest.raises(SignatureError, match="timestamp is stale"):
        verify_sns(message, cache, max_age=3600, now=NOW + 3601)
    with pytest.raises(SignatureError, match="not an ISO 8601 time"):
        verify_sns(signed(message | {"Timestamp": "yesterday"}), cache, max_age=3600, now=NOW)


# -- the certificate cache -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_fetches_a_url_once_until_its_ttl_ends() -> None:
    served, clock = Served(), Clock()
    cache = CertificateCache(served, ttl=60, clock=clock)
    for _ in range(3):
        verify_sns(notification(), cache)
    assert served.urls == [CERT_URL]
    clock.now += 61
    verify_sns(notification(), cache)
    assert served.urls == [CERT_URL, CERT_URL]


def test_the_cache_is_keyed_by_url_and_bounded() -> None:
    served = Served()
    cache = CertificateCache(served, max_entries=2)
    urls = [CERT_URL.replace("0123", str(n)) for n in range(3)]
    for url in urls:
        verify_sns(signed(notification() | {"SigningCertURL": url}), cache)
    verify_sns(signed(notification() | {"SigningCertURL": urls[2]}), cache)  # still cached
    verify_sns(signed(notification() | {"SigningCertURL": urls[0]}), cache)  # evicted: fetched
    assert served.urls == [*urls, urls[0]]


def test_the_cache_never_fetches_an_unchecked_url() -> None:
    served = Served()
    with pytest.raises(SignatureError):
        CertificateCache(served).public_key("https://example.com/cert.pem")
    assert served.urls == []


def test_the_cache_refuses_a_useless_configuration() -> None:
    for arguments in ({"ttl": 0}, {"max_entries": 0}):
        with pytest.raises(ConfigurationError):
            CertificateCache(Served(), **arguments)  # type: ignore[arg-type]
