"""Amazon SES through Amazon SNS: signed SNS messages carrying SES bounce notifications.

SNS posts a JSON envelope signed with RSA (v1 SHA1, v2 SHA256); the key comes
from the certificate at ``SigningCertURL``, fetched only from an SNS host over
HTTPS and cached. Only configured topics are accepted: anyone can point their
own topic at a URL and get validly signed messages from AWS. SNS counts any
4xx as delivered, so what may succeed on a retry (a certificate that could not
be fetched) is answered 503. Facts and sources: ``docs/providers.md``,
section 3, in the project. Needs the ``crypto`` extra (``cryptography``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from bounce_middleware.errors import (
    ConfigurationError,
    PayloadError,
    TemporaryFailure,
    Unauthorized,
)
from bounce_middleware.request import WebhookRequest
from bounce_middleware.signatures.common import SignatureError, require_cryptography
from bounce_middleware.signatures.fetch import Fetch, FetchError, fetch_https
from bounce_middleware.signatures.sns import (
    DEFAULT_CERTIFICATE_TTL,
    SIGNED_FIELDS,
    CertificateCache,
    check_subscribe_url,
    fetch_bytes,
    verify_sns,
)

from .amazon_ses_events import PROVIDER, parse_ses_message
from .base import POST_ONLY, BasicCredentials, Parsed, load_json_object

logger = logging.getLogger("bounce_middleware")

#: What SES event publishing sends once a configuration set's topic is set up.
VALIDATION_MESSAGE = "Successfully validated SNS topic for Amazon SES event publishing."

RAW_DELIVERY = (
    "raw message delivery is on: SNS signs only its JSON envelope, so this cannot be "
    "verified; turn off 'Enable raw message delivery' on the HTTPS subscription"
)

# An SNS topic ARN: arn:<partition>:sns:<region>:<account>:<name>. Six parts exactly, so
# a pasted subscription ARN (the topic's ARN plus ":<uuid>") is caught when configured.
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}", re.ASCII)

# Unsigned headers SNS adds, each repeating a signed field: a mismatch means a forgery
# or a confused proxy. Each is checked only when present (curl replays lack them).
_HEADER_FIELDS = (
    ("x-amz-sns-message-type", "Type"),
    ("x-amz-sns-message-id", "MessageId"),
    ("x-amz-sns-topic-arn", "TopicArn"),
)
# The envelope decoded and verified by authenticate, for parse (WebhookRequest.memo).
_MEMO = "amazon_ses.envelope"


class AmazonSES:
    """Amazon SES bounce, complaint and delivery-delay notifications, delivered by SNS.

    ``topic_arns``: the SNS topics whose messages are accepted (at least one).
    ``fetch(url) -> bytes`` gets signing certificates and confirms subscriptions
    (default: an HTTPS GET with a 5 s timeout, no redirects). ``auto_confirm``:
    confirm a configured topic's subscription by visiting its ``SubscribeURL``
    (off: the URL is logged for you to visit). ``credentials``: optional HTTP
    Basic ``user:password`` pairs, put in the subscription's endpoint URL
    (SNS sends them after the 401 challenge). ``cache_seconds``: how long a
    certificate is kept. ``signature_versions``: ``["2"]`` once the topic signs
    with SHA-256 refuses a downgrade to v1.
    """

    name: str = PROVIDER
    methods: frozenset[str] = POST_ONLY
    refuse_status: int = 400  # SNS drops on any 4xx: a refused body is kept, never lost
    retry_status: int | None = None  # DESIGN's 500 and 503: SNS retries every 5xx
    options: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "topic_arns": "list",
            "fetch": "object",
            "auto_confirm": "bool",
            "credentials": "credentials",
            "realm": "str",
            "cache_seconds": "float",
            "signature_versions": "list",
        }
    )

    def __init__(
        self,
        *,
        topic_arns: Iterable[str],
        fetch: Fetch | None = None,
        auto_confirm: bool = True,
        credentials: Iterable[str] | None = None,
        realm: str = "bounce-middleware",
        cache_seconds: float = DEFAULT_CERTIFICATE_TTL,
        signature_versions: Iterable[str] = ("1", "2"),
    ) -> None:
        require_cryptography()  # fail when built, not at the first request
        self.topic_arns = _topic_arns(topic_arns)
        if fetch is None:
            fetch = fetch_https
        elif not callable(fetch):
            raise ConfigurationError(f"fetch must be a callable fetch(url) -> bytes, not {fetch!r}")
        self.fetch: Fetch = fetch
        self.certificates = CertificateCache(fetch, ttl=cache_seconds)
        if type(auto_confirm) is not bool:
            raise ConfigurationError("auto_confirm must be True or False")
        self.auto_confirm = auto_confirm
        self.foreign_topics = _ForeignTopics()
        self.basic = None if credentials is None else BasicCredentials(credentials, realm=realm)
        versions = (
            (signature_versions,) if isinstance(signature_versions, str) else signature_versions
        )
        self.signature_versions = frozenset(str(v) for v in versions)
        if not self.signature_versions or not self.signature_versions <= {"1", "2"}:
            raise ConfigurationError('signature_versions must be some of "1" and "2"')

    def check_headers(self, request: WebhookRequest) -> None:
        """The Basic credentials, if configured: checked by the front before the body is read.

        SNS posts without credentials first and sends them after the 401 challenge.
        """
        if self.basic is not None:
            self.basic.check(request)

    def authenticate(self, request: WebhookRequest) -> None:
        """Verify the SNS signature and the topic; Unauthorized, or TemporaryFailure (503)."""
        self.check_headers(request)
        if (request.headers.get("x-amz-sns-rawdelivery") or "").strip().lower() == "true":
            raise Unauthorized(RAW_DELIVERY)
        envelope = _envelope(request.body)
        headers = request.headers
        for header, field in _HEADER_FIELDS:
            value = headers.get(header)
            if value is not None and value.strip() != envelope.get(field):
                raise Unauthorized(f"header {header} does not match the body's {field}")
        try:
            verify_sns(envelope, self.certificates, versions=self.signature_versions)
        except SignatureError as error:
            raise Unauthorized(error.reason) from None
        except FetchError as error:
            raise TemporaryFailure(f"SNS signing certificate not fetched: {error.reason}") from None
        topic: str = envelope["TopicArn"]  # a signed field: verify_sns checked it is a string
        if topic not in self.topic_arns:
            if envelope["Type"] == "Notification":
                # Authentic: SNS will not send it again after the 401, so it is kept,
                # within the limit (see _ForeignTopics).
                raise Unauthorized(
                    f"SNS topic {topic} is not in topic_arns; add it to accept its notifications",
                    keep=self.foreign_topics.keep(topic),
                )
            raise Unauthorized(
                f"{envelope['Type']} from SNS topic {topic}, which is not in topic_arns: "
                "ignored (add the topic if it is yours, then confirm it again in SNS)"
            )
        request.memo[_MEMO] = envelope

    def parse(self, request: WebhookRequest) -> Parsed:
        """The events of an SNS notification, or the handshake of a (un)subscription."""
        envelope = request.memo.get(_MEMO)
        if envelope is None:  # not authenticated just now: a replay, a test
            envelope = load_json_object(request.body)
        message_type = envelope.get("Type")
        topic = envelope.get("TopicArn")
        if type(topic) is not str:
            raise PayloadError("SNS field TopicArn is missing or not a string")
        if topic not in self.topic_arns:
            # Reached only by a replay or a direct call: authenticate refuses it first.
            shown = topic if _TOPIC_ARN.fullmatch(topic) else "an unknown topic"
            raise PayloadError(f"SNS topic {shown} is not in topic_arns")
        if message_type == "Notification":
            message = envelope.get("Message")
            message_id = envelope.get("MessageId")
            if type(message) is not str or type(message_id) is not str or not message_id:
                raise PayloadError("SNS fields Message and MessageId must be strings")
            if message.strip() == VALIDATION_MESSAGE:
                return Parsed(handshake="SNS topic validated for SES event publishing")
            return parse_ses_message(
                message,
                message_id=message_id,
                sns_time=envelope.get("Timestamp"),
                body=request.body,
            )
        if message_type == "SubscriptionConfirmation":
            return self._confirm(envelope, topic)
        if message_type == "UnsubscribeConfirmation":
            logger.warning(
                "%s: SNS topic %s unsubscribed this endpoint; its notifications stop "
                "until the subscription is made again",
                PROVIDER,
                topic,
            )
            return Parsed(handshake="unsubscription noted")
        raise PayloadError("SNS field Type is not a message type SNS sends")

    def _confirm(self, envelope: Mapping[str, Any], topic: str) -> Parsed:
        try:
            url = check_subscribe_url(envelope.get("SubscribeURL"))
        except SignatureError as error:
            raise PayloadError(error.reason) from None
        if not self.auto_confirm:
            # The URL holds a token, but all it can do is confirm this subscription of a
            # topic the application configured, which is what its owner must now do:
            # the log is the only place the owner can find it.
            logger.warning(
                "%s: SNS topic %s asks to confirm this endpoint's subscription; auto_confirm "
                "is off: visit this URL within 3 days to confirm it: %s",
                PROVIDER,
                topic,
                url,
            )
            return Parsed(handshake="subscription confirmation received; confirm it by hand")
        try:
            fetch_bytes(self.fetch, url)
        except FetchError as error:
            raise TemporaryFailure(f"SNS subscription not confirmed: {error.reason}") from None
        logger.info("%s: confirmed the subscription to SNS topic %s", PROVIDER, topic)
        return Parsed(handshake="subscription confirmed")


#: Notifications kept per topic not in ``topic_arns``, and topics counted (per provider).
FOREIGN_KEPT_PER_TOPIC = 20
FOREIGN_TOPICS_COUNTED = 50


class _ForeignTopics:
    """How many notifications of each topic not configured were kept: a bounded count.

    Anyone with an AWS account can subscribe this endpoint to a topic of their
    own and send authentic, AWS-signed notifications, each distinct one kept as
    a rejected record and logged at ERROR: an unbounded store and log for
    anyone. The first few of a topic are what its owner needs to notice a
    topic missing from ``topic_arns`` (and to replay them once it is added);
    past that, and past that many topics, they are refused (401) without
    being kept, said by one WARNING per topic (and one for every topic past
    the count). The counts live in this process only: a restart starts again.
    """

    def __init__(self) -> None:
        self._kept: dict[str, int] = {}
        self._full = False  # past FOREIGN_TOPICS_COUNTED topics (said once)
        self._lock = threading.Lock()

    def keep(self, topic: str) -> bool:
        """Whether to keep this notification of ``topic`` (counted if so); warns once if not."""
        with self._lock:
            kept = self._kept.get(topic, 0)
            if kept < FOREIGN_KEPT_PER_TOPIC and (kept or len(self._kept) < FOREIGN_TOPICS_COUNTED):
                self._kept[topic] = kept + 1
                return True
            if kept == FOREIGN_KEPT_PER_TOPIC:
                self._kept[topic] = kept + 1  # said once for this topic
                logger.warning(
                    "%s: %d notifications from SNS topic %s, which is not in topic_arns, were "
                    "kept; further ones are refused without being kept",
                    PROVIDER,
                    FOREIGN_KEPT_PER_TOPIC,
                    topic,
                )
            elif not kept and not self._full:
                self._full = True
                logger.warning(
                    "%s: notifications from %d SNS topics not in topic_arns were kept; those of "
                    "any further topic (the first: %s) are refused without being kept",
                    PROVIDER,
                    FOREIGN_TOPICS_COUNTED,
                    topic,
                )
            return False


def _envelope(body: bytes) -> Mapping[str, Any]:
    """The SNS envelope, decoded once; Unauthorized when the body is none."""
    try:
        envelope = load_json_object(body)
    except PayloadError as error:
        raise Unauthorized(
            f"body is not a signed SNS message ({error.reason}); "
            "if raw message delivery is on, turn it off"
        ) from None
    message_type = envelope.get("Type")
    if message_type is None and ("notificationType" in envelope or "eventType" in envelope):
        raise Unauthorized(RAW_DELIVERY)  # a bare SES notification: raw delivery without the header
    if type(message_type) is not str or message_type not in SIGNED_FIELDS:
        raise Unauthorized("body is not a signed SNS message (no SNS Type)")
    return envelope


def _topic_arns(topic_arns: Iterable[str]) -> frozenset[str]:
    if isinstance(topic_arns, str):
        topic_arns = topic_arns.split()
    elif not isinstance(topic_arns, Iterable):
        raise ConfigurationError("topic_arns must be a list of SNS topic ARNs")
    arns = []
    for arn in topic_arns:
        if not isinstance(arn, str) or not _TOPIC_ARN.fullmatch(arn.strip()):
            raise ConfigurationError(
                f"topic_arns: {arn!r} is not an SNS topic ARN "
                "(arn:aws:sns:<region>:<account>:<topic>; not a subscription ARN)"
            )
        arns.append(arn.strip())
    if not arns:
        # Fail closed: without a topic every signed message would be refused, or
        # (worse, if this accepted any topic) anyone's topic would be accepted.
        raise ConfigurationError("no SNS topic configured: give topic_arns=[...]")
    return frozenset(arns)
