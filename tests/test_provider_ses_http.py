"""Amazon SES through the middleware (WebTest): statuses, dispatch, refusals kept, handshakes."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from webtest import TestApp, TestRequest, TestResponse

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore, SQLiteStore
from bounce_middleware.providers.amazon_ses import FOREIGN_KEPT_PER_TOPIC, AmazonSES
from bounce_middleware.request import post
from bounce_middleware.samples.amazon_ses import (
    SES_KINDS,
    TEST_SNS_CERT_URL,
    VALIDATION_MESSAGE,
    SNSTestFetcher,
    sample_request,
    ses_bounce,
    sign_envelope,
    sign_request,
    sns_notification,
    sns_subscription_confirmation,
)
from bounce_middleware.store import Store

from .test_provider_ses import OTHER_TOPIC, PATH, TOPIC

ACKNOWLEDGED_KINDS = {"delivery"}
SAMPLE_KIND = {"delay": "soft"}  # sample names that are not the kind they parse to


class Handler:
    """Records each bounce; fails for the addresses in ``broken``."""

    def __init__(self) -> None:
        self.seen: list[Bounce] = []
        self.broken: set[str] = set()

    def __call__(self, bounce: Bounce) -> None:
        if bounce.email in self.broken:
            raise RuntimeError("the handler's database is down")
        self.seen.append(bounce)


def downstream(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the application"]


def make_app(
    handler: Handler,
    store: Store | None = None,
    fetcher: SNSTestFetcher | None = None,
    **options: Any,
) -> TestApp:
    provider = AmazonSES(topic_arns=[TOPIC], fetch=fetcher or SNSTestFetcher(), **options)
    app = BounceMiddleware(downstream, routes={PATH: provider}, handlers=[handler], store=store)
    return TestApp(app)


def send(app: TestApp, request: tuple[dict[str, str], bytes], status: int) -> TestResponse:
    headers, body = request
    response = app.do_request(
        TestRequest.blank(PATH, method="POST", headers=headers, body=body), status="*"
    )
    assert response.status_int == status, response.text
    return response


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(str(tmp_path / "bounces.sqlite3"))


@pytest.mark.parametrize("kind", sorted(SES_KINDS))
def test_every_sample_kind_is_dispatched_or_acknowledged(kind: str, handler: Handler) -> None:
    send(make_app(handler), sample_request(kind, email="ann@example.com"), 200)
    if kind in ACKNOWLEDGED_KINDS:
        assert handler.seen == []
    else:
        [bounce] = handler.seen
        assert (bounce.kind, bounce.email) == (SAMPLE_KIND.get(kind, kind), "ann@example.com")


def test_a_multi_recipient_bounce_is_claimed_per_recipient(handler: Handler, store: Store) -> None:
    addresses = ["ann@example.com", "bob@example.com", "cy@example.com"]
    recipients = [{"emailAddress": a, "status": "5.1.1"} for a in addresses]
    request = sign_request(ses_bounce(recipients=recipients))
    app = make_app(handler, store)
    handler.broken = {"bob@example.com"}
    send(app, request, 500)  # SNS retries a 5xx
    assert sorted(b.email for b in handler.seen) == ["ann@example.com", "cy@example.com"]
    assert len(store.records()) == 3
    handler.broken.clear()
    send(app, request, 200)  # the retry runs only what is not done
    assert sorted(b.email for b in handler.seen) == sorted(addresses)
    assert sorted(r.email for r in store.records()) == sorted(addresses)
    assert all(r.finished for r in store.records())
    send(app, request, 200)
    assert len(handler.seen) == 3


def test_a_recipient_entry_without_an_address_is_kept_and_the_others_dispatched_with_200(
    handler: Handler, store: Store
) -> None:
    recipients = [{"emailAddress": "ann@example.com"}, {"status": "5.1.1"}]
    request = sign_request(ses_bounce(recipients=recipients))
    send(make_app(handler, store), request, 200)
    assert [b.email for b in handler.seen] == ["ann@example.com"]
    [kept] = store.records(rejected=True)
    assert kept.body == request[1] and "no emailAddress" in kept.reason


def test_a_wrong_signature_gets_401_and_nothing_is_dispatched_or_kept(
    handler: Handler, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    headers, body = sign_request(ses_bounce())
    envelope = json.loads(body)
    envelope["Message"] = envelope["Message"].replace("Permanent", "Transient")
    response = send(make_app(handler, store), (headers, json.dumps(envelope).encode()), 401)
    assert response.text.strip() == "not authenticated"
    assert "does not verify" in caplog.text
    assert envelope["Signature"] not in caplog.text and "ann@example.com" not in caplog.text
    assert handler.seen == []
    assert store.records() == [] and store.records(rejected=True) == []


def test_a_foreign_topic_notification_is_kept_as_a_rejected_record(
    handler: Handler, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    request = sign_request(ses_bounce(), topic_arn=OTHER_TOPIC)
    with caplog.at_level(logging.ERROR, logger="bounce_middleware"):
        send(make_app(handler, store), request, 401)
    assert handler.seen == [] and store.records() == []
    [kept] = store.records(rejected=True)
    assert kept.body == request[1] and OTHER_TOPIC in kept.reason
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and OTHER_TOPIC in errors[0].getMessage()
    # Once the topic is configured, the kept body parses to its events (what replay does).
    later = AmazonSES(topic_arns=[TOPIC, OTHER_TOPIC], fetch=SNSTestFetcher())
    assert [e.kind.value for e in later.parse(post(PATH, kept.body)).events] == ["hard"]


def test_a_flood_from_a_foreign_topic_is_kept_only_up_to_a_limit(
    handler: Handler, store: Store
) -> None:
    app = make_app(handler, store)
    for n in range(FOREIGN_KEPT_PER_TOPIC + 3):
        message = ses_bounce(recipients=[{"emailAddress": f"x{n}@example.com"}])
        send(app, sign_request(message, topic_arn=OTHER_TOPIC), 401)
    assert len(store.records(rejected=True, limit=None)) == FOREIGN_KEPT_PER_TOPIC
    assert handler.seen == []


def test_a_foreign_topic_confirmation_gets_401_is_not_kept_nor_confirmed(
    handler: Handler, store: Store
) -> None:
    fetcher = SNSTestFetcher()
    envelope = sns_subscription_confirmation(topic_arn=OTHER_TOPIC)
    send(make_app(handler, store, fetcher), sign_envelope(envelope), 401)
    assert fetcher.confirmed == []
    assert store.records() == [] and store.records(rejected=True) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-1.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com:444/SimpleNotificationService-1.pem",
    ],
)
def test_a_certificate_url_off_the_sns_hosts_gets_401_and_no_fetch(
    url: str, handler: Handler, store: Store
) -> None:
    fetcher = SNSTestFetcher()
    envelope = sns_notification(ses_bounce())
    envelope["SigningCertURL"] = url
    send(make_app(handler, store, fetcher), sign_envelope(envelope), 401)
    assert fetcher.calls == [] and handler.seen == []
    assert store.records(rejected=True) == []


def test_a_certificate_fetch_failure_gets_503_then_the_retry_succeeds(handler: Handler) -> None:
    fetcher = SNSTestFetcher(fail=True)
    app = make_app(handler, fetcher=fetcher)
    request = sign_request(ses_bounce())
    response = send(app, request, 503)
    assert response.headers["Retry-After"]
    assert handler.seen == []
    fetcher.fail = False
    send(app, request, 200)
    assert [b.kind.value for b in handler.seen] == ["hard"]


class ConnectError(Exception):
    """What httpx and urllib3 raise: no OSError."""


def raising_fetcher(url: str) -> bytes:
    raise ConnectError("connection refused")


def text_fetcher(url: str) -> bytes:
    return SNSTestFetcher()(url).decode()  # type: ignore[return-value]  # a careless fetcher


@pytest.mark.parametrize("fetch", [raising_fetcher, text_fetcher])
def test_a_fetcher_raising_anything_or_returning_text_gets_503_with_retry_after(
    fetch: Any, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    response = send(make_app(handler, fetcher=fetch), sign_request(ses_bounce()), 503)
    assert response.headers["Retry-After"]
    assert handler.seen == [] and "connection refused" not in caplog.text


def test_a_subscription_is_confirmed_through_the_fetcher(handler: Handler) -> None:
    fetcher = SNSTestFetcher()
    envelope = sns_subscription_confirmation()
    response = send(make_app(handler, fetcher=fetcher), sign_envelope(envelope), 200)
    assert "subscription confirmed" in response.text
    assert fetcher.calls == [TEST_SNS_CERT_URL, envelope["SubscribeURL"]]
    assert handler.seen == []


def test_without_auto_confirm_nothing_is_visited(handler: Handler) -> None:
    fetcher = SNSTestFetcher()
    app = make_app(handler, fetcher=fetcher, auto_confirm=False)
    send(app, sign_envelope(sns_subscription_confirmation()), 200)
    assert fetcher.confirmed == []


def test_raw_message_delivery_gets_401_with_the_reason_logged(
    handler: Handler, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    fetcher = SNSTestFetcher()
    raw = ({"x-amz-sns-rawdelivery": "true"}, json.dumps(ses_bounce()).encode())
    send(make_app(handler, store, fetcher), raw, 401)
    assert "raw message delivery is on" in caplog.text
    assert fetcher.calls == [] and handler.seen == []
    assert store.records(rejected=True) == []


def test_the_validation_notice_and_acknowledged_records_get_200(handler: Handler) -> None:
    app = make_app(handler)
    send(app, sign_request(VALIDATION_MESSAGE), 200)
    send(app, sample_request("delivery", email="ann@example.com"), 200)
    assert handler.seen == []


def test_the_certificate_is_fetched_once_for_two_requests(handler: Handler) -> None:
    fetcher = SNSTestFetcher()
    app = make_app(handler, fetcher=fetcher)
    send(app, sign_request(ses_bounce(email="ann@example.com")), 200)
    send(app, sign_request(ses_bounce(email="bob@example.com"), version=2), 200)
    assert fetcher.calls == [TEST_SNS_CERT_URL]
    assert [b.email for b in handler.seen] == ["ann@example.com", "bob@example.com"]


def test_an_authentic_message_that_is_no_ses_notification_is_kept_with_400(
    handler: Handler, store: Store
) -> None:
    request = sign_request("Hello world!")
    response = send(make_app(handler, store), request, 400)
    assert "not an SES notification" in response.text
    [kept] = store.records(rejected=True)
    assert kept.body == request[1]


def test_basic_credentials_are_challenged_as_sns_expects(handler: Handler) -> None:
    app = make_app(handler, credentials=["sns:a-long-enough-password"])
    headers, body = sign_request(ses_bounce())
    response = send(app, (headers, body), 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert handler.seen == []
    send(
        app,
        sample_request("hard", email="ann@example.com", secret="sns:a-long-enough-password"),
        200,
    )
    assert len(handler.seen) == 1


def test_other_paths_pass_through(handler: Handler) -> None:
    app = make_app(handler)
    assert app.post("/elsewhere", "{}").text == "the application"
