"""Amazon SES (SNS): the provider's construction and settings, and subscription handshakes.

The TEST certificate is served by an injected fetcher that records every URL
(never the network).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pytest

from bounce_middleware import ConfigurationError, PayloadError
from bounce_middleware.errors import TemporaryFailure
from bounce_middleware.providers import POST_ONLY, Parsed, Provider
from bounce_middleware.providers.amazon_ses import AmazonSES
from bounce_middleware.samples.amazon_ses import (
    SNSTestFetcher,
    sns_subscription_confirmation,
    test_fetcher,
)
from bounce_middleware.settings import parse_settings
from bounce_middleware.signatures import fetch_https

from .test_provider_ses import OTHER_TOPIC, TOPIC, envelope_request, make


def test_a_subscription_confirmation_is_confirmed_through_the_fetcher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetcher = SNSTestFetcher()
    provider = make(fetcher)
    envelope = sns_subscription_confirmation()
    request = envelope_request(envelope)
    provider.authenticate(request)
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        assert provider.parse(request) == Parsed(handshake="subscription confirmed")
    assert fetcher.confirmed == [envelope["SubscribeURL"]]
    assert TOPIC in caplog.text and envelope["Token"] not in caplog.text


def test_without_auto_confirm_the_url_to_visit_is_logged_and_nothing_fetched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetcher = SNSTestFetcher()
    provider = make(fetcher, auto_confirm=False)
    envelope = sns_subscription_confirmation()
    request = envelope_request(envelope)
    provider.authenticate(request)
    with caplog.at_level(logging.WARNING, logger="bounce_middleware"):
        parsed = provider.parse(request)
    assert parsed.handshake and not parsed.events
    assert fetcher.confirmed == []
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert TOPIC in record.getMessage() and envelope["SubscribeURL"] in record.getMessage()


def test_a_failed_confirmation_is_a_temporary_failure() -> None:
    provider = make()
    request = envelope_request(sns_subscription_confirmation())
    provider.authenticate(request)
    provider.fetch = SNSTestFetcher(fail=True)  # the certificate came; AWS is down since
    with pytest.raises(TemporaryFailure, match="SNS subscription not confirmed"):
        provider.parse(request)


def test_a_confirmation_whose_fetcher_raises_anything_is_a_temporary_failure() -> None:
    class ConnectError(Exception):  # what httpx and urllib3 raise: no OSError
        pass

    def down(url: str) -> bytes:
        raise ConnectError(url)  # the URL holds the subscription's token

    provider = make()
    request = envelope_request(sns_subscription_confirmation())
    provider.authenticate(request)
    provider.fetch = down
    with pytest.raises(TemporaryFailure) as caught:
        provider.parse(request)
    assert caught.value.reason == "SNS subscription not confirmed: fetching failed: ConnectError"


def test_a_subscribe_url_off_the_sns_hosts_is_never_visited() -> None:
    fetcher = SNSTestFetcher()
    provider = make(fetcher)
    envelope = sns_subscription_confirmation()
    envelope["SubscribeURL"] = "https://attacker.example/?Action=ConfirmSubscription&Token=1"
    request = envelope_request(envelope)
    provider.authenticate(request)
    with pytest.raises(PayloadError, match="SubscribeURL"):
        provider.parse(request)
    assert fetcher.confirmed == []


def test_an_unsubscribe_confirmation_is_answered_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetcher = SNSTestFetcher()
    provider = make(fetcher)
    request = envelope_request(sns_subscription_confirmation(type="UnsubscribeConfirmation"))
    provider.authenticate(request)
    with caplog.at_level(logging.WARNING, logger="bounce_middleware"):
        assert provider.parse(request).handshake == "unsubscription noted"
    assert fetcher.confirmed == []
    assert "unsubscribed this endpoint" in caplog.text and TOPIC in caplog.text


def test_the_provider_attributes() -> None:
    provider = make()
    assert isinstance(provider, Provider)
    assert provider.name == "amazon_ses"
    assert provider.methods == POST_ONLY
    assert (provider.refuse_status, provider.retry_status) == (400, None)


def test_options_name_every_constructor_keyword() -> None:
    parameters = set(inspect.signature(AmazonSES).parameters)
    assert set(AmazonSES.options) == parameters
    assert AmazonSES.options["fetch"] == "object"
    assert AmazonSES.options["topic_arns"] == "list"


def test_the_default_fetcher_is_the_https_one() -> None:
    assert AmazonSES(topic_arns=[TOPIC]).fetch is fetch_https


@pytest.mark.parametrize(
    "topic_arns",
    [
        [],
        "",
        [""],
        ["bounces"],
        [TOPIC + ":6f1b0d4e-2c3a-4b5d-8e9f-0a1b2c3d4e5f"],  # a subscription ARN, pasted by mistake
        ["arn:aws:sqs:us-east-1:123456789012:queue"],
        [None],
    ],
)
def test_no_topic_or_a_wrong_one_fails_closed(topic_arns: Any) -> None:
    with pytest.raises(ConfigurationError, match="topic"):
        AmazonSES(topic_arns=topic_arns)


def test_topics_from_a_settings_string_and_partitions() -> None:
    china = "arn:aws-cn:sns:cn-north-1:123456789012:bounces"
    provider = AmazonSES(topic_arns=f"{TOPIC}\n  {china}")
    assert provider.topic_arns == {TOPIC, china}


@pytest.mark.parametrize(
    "options",
    [
        {"fetch": "bounce_middleware.samples.amazon_ses.test_fetcher"},
        {"signature_versions": ["3"]},
        {"signature_versions": []},
        {"cache_seconds": 0},
        {"auto_confirm": "false"},
    ],
)
def test_other_bad_options_fail_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        AmazonSES(topic_arns=[TOPIC], **options)


def test_a_route_built_from_flat_settings() -> None:
    args = parse_settings(
        {
            "bounce.routes": "/hooks/ses bounce_middleware.providers.amazon_ses:AmazonSES",
            "bounce.amazon_ses.topic_arns": f"{TOPIC} {OTHER_TOPIC}",
            "bounce.amazon_ses.fetch": "bounce_middleware.samples.amazon_ses:test_fetcher",
            "bounce.amazon_ses.auto_confirm": "false",
            "bounce.amazon_ses.credentials": "sns:a-long-enough-password",
            "bounce.amazon_ses.cache_seconds": "60",
            "bounce.amazon_ses.signature_versions": "2",
        }
    )
    provider = args["routes"]["/hooks/ses"]
    assert isinstance(provider, AmazonSES)
    assert provider.topic_arns == {TOPIC, OTHER_TOPIC}
    assert provider.fetch is test_fetcher
    assert provider.auto_confirm is False
    assert provider.basic is not None and provider.signature_versions == {"2"}
