"""Amazon SES (SNS) authentication: signatures v1 and v2, certificate URLs, topics, raw delivery.

The TEST certificate is served by an injected fetcher that records every URL,
so each test can say whether anything was fetched; nothing touches the network.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bounce_middleware.errors import TemporaryFailure, Unauthorized
from bounce_middleware.providers.amazon_ses import (
    FOREIGN_KEPT_PER_TOPIC,
    FOREIGN_TOPICS_COUNTED,
    AmazonSES,
)
from bounce_middleware.request import WebhookRequest, post
from bounce_middleware.samples import basic_auth_header
from bounce_middleware.samples.amazon_ses import (
    TEST_SNS_CERT_URL,
    TEST_SNS_CERTIFICATE_PEM,
    SNSTestFetcher,
    ses_bounce,
    sign_envelope,
    sign_request,
    sns_notification,
    sns_subscription_confirmation,
)

from .signatures.selfmade import certificate_pem, private_key_pem, rsa_key
from .test_provider_ses import OTHER_TOPIC, PATH, TOPIC, envelope_request, make


def refused(provider: AmazonSES, request: WebhookRequest) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        provider.authenticate(request)
    error = caught.value
    assert error.reason and "\n" not in error.reason
    return error


@pytest.mark.parametrize("version", [1, 2])
def test_signature_versions_1_and_2_verify(version: int) -> None:
    fetcher = SNSTestFetcher()
    request = post(PATH, *_swap(sign_request(ses_bounce(), version=version)))
    make(fetcher).authenticate(request)
    assert fetcher.calls == [TEST_SNS_CERT_URL]
    assert json.loads(request.body)["SignatureVersion"] == str(version)


def test_a_signature_by_another_key_is_refused() -> None:
    other = private_key_pem(rsa_key(1))
    headers, body = sign_envelope(sns_notification(ses_bounce()), private_key_pem=other)
    error = refused(make(), post(PATH, body, headers))
    assert "does not verify" in error.reason and not error.keep


def test_a_certificate_for_another_key_is_refused() -> None:
    fetcher = SNSTestFetcher(certificates={TEST_SNS_CERT_URL: certificate_pem(rsa_key(1))})
    refused(make(fetcher), post(PATH, *_swap(sign_request(ses_bounce()))))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Message", '{"eventType": "Bounce"}'),
        ("MessageId", "another-id"),
        ("Timestamp", "2030-01-01T00:00:00.000Z"),
        ("Subject", "Another subject"),
    ],
)
def test_every_signed_field_is_covered(field: str, value: str) -> None:
    envelope = sns_notification(ses_bounce())
    headers, body = sign_envelope(envelope)
    tampered = json.loads(body) | {field: value}
    headers.pop("x-amz-sns-message-id")
    error = refused(make(), post(PATH, json.dumps(tampered).encode(), headers))
    assert "does not verify" in error.reason


def test_a_topic_signing_with_sha256_only_refuses_a_v1_downgrade() -> None:
    provider = make(signature_versions=["2"])
    provider.authenticate(post(PATH, *_swap(sign_request(ses_bounce(), version=2))))
    error = refused(provider, post(PATH, *_swap(sign_request(ses_bounce(), version=1))))
    assert "SignatureVersion" in error.reason


def test_a_notification_from_a_topic_not_configured_is_authentic_but_kept() -> None:
    error = refused(make(), post(PATH, *_swap(sign_request(ses_bounce(), topic_arn=OTHER_TOPIC))))
    assert error.keep
    assert OTHER_TOPIC in error.reason and "topic_arns" in error.reason
    assert len(error.reason) <= 200  # the log line shows it whole


def foreign(topic: str = OTHER_TOPIC) -> WebhookRequest:
    return post(PATH, *_swap(sign_request(ses_bounce(), topic_arn=topic)))


def test_only_the_first_notifications_of_a_topic_not_configured_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Anyone can send authentic notifications from a topic of their own: keeping each
    # would fill the store and the log without limit.
    provider = make()
    request = foreign()
    kept = [refused(provider, request).keep for _ in range(FOREIGN_KEPT_PER_TOPIC + 5)]
    assert kept == [True] * FOREIGN_KEPT_PER_TOPIC + [False] * 5
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert OTHER_TOPIC in warning.getMessage() and "without being kept" in warning.getMessage()
    assert refused(provider, foreign(OTHER_TOPIC + "-2")).keep  # another topic: its own count
    assert refused(make(), request).keep  # another provider instance: its own counts


def test_notifications_of_topics_past_the_counted_ones_are_not_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = make()
    topics = [f"{OTHER_TOPIC}-{n}" for n in range(FOREIGN_TOPICS_COUNTED + 3)]
    kept = [refused(provider, foreign(topic)).keep for topic in topics]
    assert kept == [True] * FOREIGN_TOPICS_COUNTED + [False] * 3
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert topics[FOREIGN_TOPICS_COUNTED] in warning.getMessage()
    assert refused(provider, foreign(topics[0])).keep  # a topic counted already still is


def test_the_count_of_a_foreign_topic_holds_across_threads() -> None:
    provider = make()
    request = foreign()
    provider.authenticate(post(PATH, *_swap(sign_request(ses_bounce()))))  # certificate cached
    with ThreadPoolExecutor(8) as pool:
        kept = list(pool.map(lambda _: refused(provider, request).keep, range(60)))
    assert kept.count(True) == FOREIGN_KEPT_PER_TOPIC


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_a_confirmation_from_a_topic_not_configured_is_refused_and_not_kept(kind: str) -> None:
    fetcher = SNSTestFetcher()
    envelope = sns_subscription_confirmation(topic_arn=OTHER_TOPIC, type=kind)
    error = refused(make(fetcher), envelope_request(envelope))
    assert not error.keep  # anyone can point their topic at the URL
    assert OTHER_TOPIC in error.reason
    assert fetcher.confirmed == []


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-1.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://attacker.example/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem?x=1",
        "https://s3.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.us-east-1.amazonaws.com\\@attacker.example/x.pem",
        "",
        None,
        17,
    ],
)
def test_a_certificate_url_off_the_sns_hosts_is_refused_before_any_fetch(url: Any) -> None:
    fetcher = SNSTestFetcher()
    envelope = sns_notification(ses_bounce())
    envelope["SigningCertURL"] = url  # not a signed field: anyone can change it
    error = refused(make(fetcher), envelope_request(envelope))
    assert "SigningCertURL" in error.reason
    assert fetcher.calls == []


def test_a_certificate_that_cannot_be_fetched_is_a_temporary_failure() -> None:
    # SNS counts a 4xx as delivered: a fetch that may work next time must be a 503.
    with pytest.raises(TemporaryFailure, match="SNS signing certificate not fetched"):
        make(SNSTestFetcher(fail=True)).authenticate(post(PATH, *_swap(sign_request(ses_bounce()))))


def test_a_fetcher_raising_a_plain_os_error_is_a_temporary_failure() -> None:
    def broken(url: str) -> bytes:
        raise ConnectionResetError("reset by peer")

    with pytest.raises(TemporaryFailure):
        provider = AmazonSES(topic_arns=[TOPIC], fetch=broken)
        provider.authenticate(post(PATH, *_swap(sign_request(ses_bounce()))))


def test_the_certificate_is_fetched_once_for_many_requests() -> None:
    fetcher = SNSTestFetcher()
    provider = make(fetcher)
    for version in (1, 2, 1):
        provider.authenticate(post(PATH, *_swap(sign_request(ses_bounce(), version=version))))
    assert fetcher.calls == [TEST_SNS_CERT_URL]


def test_an_expired_cache_entry_is_fetched_again() -> None:
    fetcher = SNSTestFetcher()
    provider = make(fetcher, cache_seconds=1e-9)
    for _ in range(2):
        provider.authenticate(post(PATH, *_swap(sign_request(ses_bounce()))))
    assert fetcher.calls == [TEST_SNS_CERT_URL, TEST_SNS_CERT_URL]


def test_raw_message_delivery_is_refused_with_what_to_change() -> None:
    fetcher = SNSTestFetcher()
    provider = make(fetcher)
    raw = json.dumps(ses_bounce()).encode()
    with_header = post(PATH, raw, {"x-amz-sns-rawdelivery": "true"})
    without_header = post(PATH, raw)
    for request in (with_header, without_header):
        error = refused(provider, request)
        assert "raw message delivery" in error.reason and "turn off" in error.reason
        assert not error.keep  # nothing in it can be verified: never kept
    # Even a signed envelope is refused when SNS says it was delivered raw.
    headers, body = sign_request(ses_bounce())
    refused(provider, post(PATH, body, headers | {"X-Amz-Sns-Rawdelivery": "True"}))
    assert fetcher.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"Successfully validated SNS topic for Amazon SES event publishing.",  # raw, as text
        b"not json",
        b"[]",
        b'{"Message": "x"}',
        b'{"Type": "Hello"}',
        b'{"Type": ["Notification"]}',
        b"\xff\xfe",
    ],
)
def test_a_body_that_is_no_sns_message_is_refused_without_a_fetch(body: bytes) -> None:
    fetcher = SNSTestFetcher()
    error = refused(make(fetcher), post(PATH, body))
    assert "SNS" in error.reason
    assert fetcher.calls == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-amz-sns-message-type", "SubscriptionConfirmation"),
        ("x-amz-sns-message-id", "another-id"),
        ("x-amz-sns-topic-arn", OTHER_TOPIC),
    ],
)
def test_a_header_contradicting_the_signed_body_is_refused(header: str, value: str) -> None:
    fetcher = SNSTestFetcher()
    headers, body = sign_request(ses_bounce())
    error = refused(make(fetcher), post(PATH, body, headers | {header: value}))
    assert header in error.reason
    assert value not in error.reason
    assert fetcher.calls == []


def test_the_sns_headers_are_optional() -> None:
    """A stored body posted again by hand (curl) has none of SNS's headers."""
    _, body = sign_request(ses_bounce())
    make().authenticate(post(PATH, body))


def test_basic_credentials_are_challenged_then_accepted() -> None:
    provider = make(credentials=["sns:a-long-enough-password"], realm="ses hooks")
    headers, body = sign_request(ses_bounce())
    error = refused(provider, post(PATH, body, headers))
    assert error.challenge == 'Basic realm="ses hooks", charset="UTF-8"'
    wrong = headers | {"Authorization": basic_auth_header("sns", "wrong")}
    assert refused(provider, post(PATH, body, wrong)).challenge
    right = headers | {"Authorization": basic_auth_header("sns", "a-long-enough-password")}
    provider.authenticate(post(PATH, body, right))


def test_a_verified_envelope_is_kept_for_parse() -> None:
    provider = make()
    request = post(PATH, *_swap(sign_request(ses_bounce())))
    provider.authenticate(request)
    assert request.memo["amazon_ses.envelope"] == json.loads(request.body)


def test_a_refused_request_leaves_nothing_for_parse() -> None:
    request = post(PATH, *_swap(sign_request(ses_bounce(), topic_arn=OTHER_TOPIC)))
    refused(make(), request)
    assert request.memo == {}


def test_the_test_certificate_is_what_the_samples_are_signed_with() -> None:
    fetcher = SNSTestFetcher(certificates={TEST_SNS_CERT_URL: TEST_SNS_CERTIFICATE_PEM})
    make(fetcher).authenticate(post(PATH, *_swap(sign_request(ses_bounce()))))


def _swap(pair: tuple[dict[str, str], bytes]) -> tuple[bytes, dict[str, str]]:
    """``(headers, body)`` as ``post`` takes them: body first."""
    return pair[1], pair[0]
