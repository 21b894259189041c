"""SendGrid: the (Signed) Event Webhook, a JSON array of mixed events per POST.

Facts, fields and the event table follow SendGrid's Event Webhook reference
(``docs/providers.md``, "SendGrid"). Requests are authenticated by the ECDSA
signature of the Signed Event Webhook (:mod:`bounce_middleware.signatures.sendgrid`),
by HTTP Basic credentials put in the webhook URL, or both. One malformed event
of a batch is kept alone as a rejected record; the rest of the batch proceeds.

Fields: ``id`` is ``sg_event_id`` (without one, the key is a digest of
``sg_message_id``, event, email and timestamp); ``message_id`` is SendGrid's
``sg_message_id`` (its part before the first ``.`` is the ``X-Message-Id``
the v3 Mail Send API answered), the ``smtp-id`` header stays in ``raw``;
``type`` is the event name; ``details`` is ``reason`` or ``response``;
``smtp_status`` is ``status``; ``tags`` are ``category``; ``metadata`` are
the custom arguments, i.e. the top-level string fields SendGrid does not set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from bounce_middleware.errors import ConfigurationError, PayloadError, Unauthorized
from bounce_middleware.model import EMPTY_MAPPING, Bounce, BounceKind
from bounce_middleware.request import WebhookRequest
from bounce_middleware.signatures.common import SignatureError
from bounce_middleware.signatures.sendgrid import (
    MAX_AGE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_sendgrid_keys,
    verify_sendgrid,
)

from .base import POST_ONLY, BasicCredentials, Parsed
from .fields import a, check_strings, not_an_object, unix_time
from .json_batch import event_body, freeze_event, load_json_array, parse_event_list

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

K = BounceKind

#: Events whose kind depends on nothing else: event -> (kind, description). ``bounce``
#: and ``dropped`` are read further below; any other event is acknowledged.
EVENT_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "deferred": (K.SOFT, "The receiving server deferred the message; SendGrid keeps trying"),
    "spamreport": (K.COMPLAINT, "The recipient reported the message as spam"),
    "unsubscribe": (K.UNSUBSCRIBE, "The recipient unsubscribed from all e-mail"),
    "group_unsubscribe": (K.UNSUBSCRIBE, "The recipient unsubscribed from a group"),
    "group_resubscribe": (K.SUBSCRIBE, "The recipient subscribed to a group again"),
}

#: ``bounce`` events by their ``type``. ``expired``: SendGrid gave up after 72 hours of
#: deferrals, a temporary cause that outlasted its retries, not a bad address.
BOUNCE_TYPE_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "bounce": (K.HARD, "The receiving server rejected the message permanently"),
    "blocked": (K.BLOCKED, "The receiving server blocked the message (reputation or content)"),
    "expired": (K.SOFT, "SendGrid stopped retrying the message after 72 hours"),
}

#: ``bounce`` events without a ``type``, by ``bounce_classification`` (lower case).
BOUNCE_CLASSIFICATION_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "invalid address": (K.HARD, "The receiving server rejected the address as invalid"),
    "mailbox unavailable": (K.HARD, "The receiving server reported the mailbox unavailable"),
    "technical failure": (K.BLOCKED, "The message bounced on a technical failure"),
    "content": (K.BLOCKED, "The receiving server refused the message's content"),
    "reputation": (K.BLOCKED, "The receiving server refused the sender's reputation"),
    "frequency or volume too high": (K.BLOCKED, "The receiving server refused the volume"),
    "unclassified": (K.BLOCKED, "The message bounced (unclassified)"),
}

#: A ``bounce`` with neither: the docs' older samples, when every bounce was permanent.
UNTYPED_BOUNCE = (K.HARD, "The receiving server rejected the message")
#: A ``bounce`` whose ``type`` SendGrid has not documented (and no known classification).
UNKNOWN_BOUNCE = (K.UNKNOWN, "The message bounced")

#: ``dropped`` events by ``reason`` (lower case): SendGrid never sent the message.
DROP_REASON_KINDS: Mapping[str, tuple[BounceKind, str]] = {
    "bounced address": (K.SUPPRESSED, "Not sent: the address bounced before"),
    "unsubscribed address": (K.SUPPRESSED, "Not sent: the address unsubscribed"),
    "spam reporting address": (K.SUPPRESSED, "Not sent: the address reported spam"),
    "invalid": (K.HARD, "Not sent: the address is not valid"),
}
#: Any other drop reason (Invalid SMTPAPI header, Spam Content, over quota...): ours to fix.
OTHER_DROP = (K.ERROR, "Not sent: SendGrid dropped the message")
#: The events SendGrid documents that are answered 200 and never dispatched.
ACKNOWLEDGED_EVENTS = frozenset({"processed", "delivered", "open", "click"})

#: Fields SendGrid itself sets. Every other top-level string is a custom argument
#: (``custom_args`` / ``unique_args``, merged into the event) and goes to ``metadata``.
SENDGRID_FIELDS = frozenset(
    {
        "asm_group_id", "attempt", "bounce_classification", "category", "cert_err",
        "email", "event", "ip", "marketing_campaign_id", "marketing_campaign_name",
        "marketing_campaign_split_id", "marketing_campaign_version", "mc_auto_id",
        "mc_auto_name", "mc_auto_step_id", "mc_pod_id", "mc_stats", "newsletter",
        "nlvx_campaign_id", "nlvx_campaign_split_id", "nlvx_user_id", "phase_id", "pool",
        "post_type", "reason", "response", "send_at", "sg_content_type", "sg_event_id",
        "sg_machine_open", "sg_message_id", "sg_template_id", "sg_template_name",
        "sg_user_id", "singlesend_id", "singlesend_name", "smtp-id", "status",
        "template_hash", "template_id", "template_name", "template_version_id",
        "timestamp", "tls", "type", "unique_args", "url", "url_offset", "useragent",
    }
)  # fmt: skip

#: String fields read into a Bounce: any other JSON type there refuses the event.
_STRING_FIELDS = (
    "email", "sg_event_id", "sg_message_id", "smtp-id", "reason", "response", "status", "type",
    "bounce_classification",
)  # fmt: skip


class SendGrid:
    """SendGrid's Event Webhook, signed (ECDSA) and/or behind HTTP Basic credentials.

    ``public_key`` is the "Verification Key" SendGrid shows once the Signed
    Event Webhook is enabled (base64, ``MFkwEwYH...``; PEM also works), or
    several while rotating. ``credentials`` are ``user:password`` strings
    for a webhook URL of the form ``https://user:password@host/path``. Give
    either or both (both are then checked); neither is a
    :class:`~bounce_middleware.ConfigurationError`. ``max_age`` is how old a
    signed timestamp may be, in seconds (SendGrid retries for 24 hours).
    """

    name: str = "sendgrid"
    methods: frozenset[str] = POST_ONLY
    refuse_status: int = 400
    retry_status: int | None = None
    #: Constructor keywords as flat settings read them (``bounce.sendgrid.public_key``).
    options: ClassVar[Mapping[str, str]] = {
        "public_key": "list", "credentials": "credentials", "realm": "str", "max_age": "float",
    }  # fmt: skip

    def __init__(
        self,
        *,
        public_key: str | Sequence[str] | None = None,
        credentials: Iterable[str] | None = None,
        realm: str = "bounce-middleware",
        max_age: float = MAX_AGE,
    ) -> None:
        if public_key is None and credentials is None:
            raise ConfigurationError(
                "SendGrid: no public_key (the Signed Event Webhook's verification key) "
                "and no credentials configured: the route refuses to run unauthenticated"
            )
        if type(max_age) not in (int, float) or not math.isfinite(max_age) or not max_age > 0:
            raise ConfigurationError("SendGrid: max_age must be a positive number of seconds")
        self.max_age = float(max_age)
        self.keys: tuple[EllipticCurvePublicKey, ...] = ()
        if public_key is not None:
            if isinstance(public_key, str) and not public_key.strip():
                raise ConfigurationError(
                    "SendGrid public_key is empty — is the environment variable that holds it set?"
                )
            self.keys = load_sendgrid_keys(public_key)
        self.basic = None if credentials is None else BasicCredentials(credentials, realm=realm)

    def check_headers(self, request: WebhookRequest) -> None:
        """The configured HTTP Basic credentials, checked before the body is read."""
        if self.basic is not None:
            self.basic.check(request)

    def authenticate(self, request: WebhookRequest) -> None:
        """Check the Basic credentials and the signature over the raw body, as configured."""
        if self.basic is not None:
            self.basic.check(request)
        if self.keys:
            try:
                verify_sendgrid(
                    self.keys,
                    request.body,
                    signature=request.header(SIGNATURE_HEADER),
                    timestamp=request.header(TIMESTAMP_HEADER),
                    max_age=self.max_age,
                )
            except SignatureError as exc:
                raise Unauthorized(exc.reason) from None

    def parse(self, request: WebhookRequest) -> Parsed:
        """The batch's events; malformed events alone are rejections; PayloadError otherwise."""
        return parse_sendgrid(request.body)


def parse_sendgrid(body: bytes) -> Parsed:
    """Parse one SendGrid Event Webhook body: a JSON array of event objects.

    An empty array is a ping (answered 200). Each event becomes a
    :class:`~bounce_middleware.Bounce` (its ``body`` the event alone, as the
    array ``[event]``), an acknowledged event name, or a
    :class:`~bounce_middleware.providers.base.Rejection`.
    """
    items = load_json_array(body, expected="SendGrid posts a JSON array of events")
    if not items:
        return Parsed(handshake="empty batch: no events")
    return parse_event_list(items, body, _event)


def _event(item: Any, check_surrogates: bool) -> Bounce | str:
    """One event: a Bounce to dispatch, or the name of an acknowledged event."""
    if type(item) is not MappingProxyType:
        raise not_an_object(item)
    data: Mapping[str, Any] = item
    event = data.get("event")
    if event is None:
        raise PayloadError("required field event is missing")
    if type(event) is not str:
        raise PayloadError(f"field event must be a string, not {a(event)}")
    name = event.lower()
    rule = EVENT_KINDS.get(name)
    if rule is None:
        if name == "bounce":
            rule = _bounce_rule(data)
        elif name == "dropped":
            rule = _drop_rule(data)
        else:
            return name
    get = data.get
    check_strings(data, _STRING_FIELDS)
    email = get("email")
    if not email:
        raise PayloadError("required field email is missing or empty")
    tags = _tags(get("category"))
    bounced_at = _timestamp(get("timestamp"))
    data = freeze_event(data, check_surrogates=check_surrogates)
    event_id = get("sg_event_id") or None
    message_id = get("sg_message_id") or None
    kind, description = rule
    return Bounce(
        provider="sendgrid",
        id=event_id,
        email=email,
        kind=kind,
        type=name,
        bounced_at=bounced_at,
        message_id=message_id,
        description=description,
        details=get("reason") or get("response") or "",
        smtp_status=get("status") or None,
        tags=tags,
        metadata=_metadata(data),
        raw=data,
        dedup_id=None if event_id else _dedup_id(message_id, name, email, get("timestamp")),
        body=event_body(data),
    )


def _bounce_rule(data: Mapping[str, Any]) -> tuple[BounceKind, str]:
    bounce_type = data.get("type")
    if type(bounce_type) is str and bounce_type.lower() in BOUNCE_TYPE_KINDS:
        return BOUNCE_TYPE_KINDS[bounce_type.lower()]
    classification = data.get("bounce_classification")
    if type(classification) is str and classification.lower() in BOUNCE_CLASSIFICATION_KINDS:
        return BOUNCE_CLASSIFICATION_KINDS[classification.lower()]
    if bounce_type is None and classification is None:
        return UNTYPED_BOUNCE
    return UNKNOWN_BOUNCE


def _drop_rule(data: Mapping[str, Any]) -> tuple[BounceKind, str]:
    reason = data.get("reason")
    if type(reason) is str:
        return DROP_REASON_KINDS.get(reason.strip().lower(), OTHER_DROP)
    return OTHER_DROP


def _tags(category: Any) -> tuple[str, ...]:
    """``category`` is a string, or a list when several were set."""
    if category is None or category == "":
        return ()
    if type(category) is str:
        return (category,)
    if type(category) is list and all(type(c) is str for c in category):
        return tuple(category)
    raise PayloadError("field category must be a string or a list of strings")


def _timestamp(value: Any) -> datetime | None:
    """When it happened: Unix seconds (an integer; a digit string in one docs sample)."""
    return unix_time(value, "timestamp", digit_strings=True, name_type=False)


def _metadata(data: Mapping[str, Any]) -> Mapping[str, str]:
    """Custom arguments: the top-level strings SendGrid does not set itself."""
    found = {k: v for k, v in data.items() if type(v) is str and k not in SENDGRID_FIELDS}
    return MappingProxyType(found) if found else EMPTY_MAPPING


def _dedup_id(message_id: str | None, event: str, email: str, timestamp: Any) -> str:
    """What identifies an event without ``sg_event_id`` (SendGrid omits it on some).

    The key holds only its digest (:attr:`Bounce.key`), so no address is logged.
    """
    return json.dumps([message_id, event, email, timestamp], separators=(",", ":"))
