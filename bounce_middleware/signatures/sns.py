"""Amazon SNS: RSA signatures (v1 SHA1withRSA, v2 SHA256withRSA) checked with AWS's certificate.

SNS signs a canonical string built from some fields of its JSON envelope and
names the certificate to check it with in ``SigningCertURL``. That URL comes
from the request, so it is only fetched when it is HTTPS on an SNS host
(``sns.<region>.amazonaws.com``, or ``.com.cn``), and the trust comes from
that TLS connection to AWS: the certificate itself is not checked against a
CA (nor are its dates), as AWS's PHP and JavaScript validators do, so a
self-made one serves in tests.
Needs the ``crypto`` extra (``cryptography``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from bounce_middleware.errors import ConfigurationError

from .common import SignatureError, check_timestamp, decode_base64, require_cryptography
from .fetch import Fetch, FetchError, fetch_https

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
#: The fields signed, in AWS's byte-sorted order, per message ``Type``
#: (sns-verify-signature-of-message). ``Subject`` only when the message has one.
SIGNED_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
        "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
        "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
    }
)
_OPTIONAL = frozenset({"Subject"})

# One pattern over the whole URL, not a URL parser: parsers disagree about
# "\", "@", tabs and ports, and a fullmatch over a small alphabet leaves nothing
# to disagree about (no userinfo, no port, no lookalike suffix, no query).
# The host is sns.<region>.amazonaws.com(.cn), the region spelled as AWS names them
# (us-east-1, us-gov-west-1, ap-southeast-2, cn-north-1 with .cn). AWS's validators
# allow any label of 3 or more ([a-zA-Z0-9-]{3,}), which also admits hosts like
# sns.s3-accelerate.amazonaws.com or sns.s3-us-west-2.amazonaws.com: S3's naming
# scheme, where a bucket called "sns" would serve whatever its owner uploads.
_HOST = r"sns\.[a-z]{2}(?:-gov)?-[a-z]+-[0-9]{1,2}\.amazonaws\.com(?:\.cn)?"
_CERT_URL = re.compile(rf"https://{_HOST}/[A-Za-z0-9._-]+\.pem", re.ASCII)
_SUBSCRIBE_URL = re.compile(
    rf"https://{_HOST}/\?Action=ConfirmSubscription&[A-Za-z0-9._~:&=%+-]+", re.ASCII
)

#: Signature versions and their hash (SNS topics default to 1).
_HASHES = {"1": "SHA1", "2": "SHA256"}

#: How long a fetched certificate's key is kept, in seconds. A certificate's URL
#: names that one certificate (AWS publishes a new URL when it rotates), so a
#: long life is safe; the limit only bounds how long a revoked one could serve.
DEFAULT_CERTIFICATE_TTL = 24 * 3600.0

#: SNS signs from one certificate per region at a time: a few entries suffice.
DEFAULT_MAX_CERTIFICATES = 16


def check_signing_cert_url(url: object) -> str:
    """``url`` if it is an SNS certificate URL to fetch, else :class:`SignatureError`.

    Accepted: ``https://sns.<region>.amazonaws.com[.cn]/<name>.pem`` exactly,
    with no port, user, query or fragment.
    """
    if not isinstance(url, str) or not _CERT_URL.fullmatch(url):
        raise SignatureError("SigningCertURL is not an https .pem URL on an SNS host")
    return url


def check_subscribe_url(url: object) -> str:
    """``url`` if it is an SNS ``ConfirmSubscription`` URL, else :class:`SignatureError`.

    For the SES provider, before it fetches ``SubscribeURL`` to confirm a topic.
    """
    if not isinstance(url, str) or not _SUBSCRIBE_URL.fullmatch(url):
        raise SignatureError("SubscribeURL is not an https ConfirmSubscription URL on an SNS host")
    return url


def sns_string_to_sign(message: Mapping[str, object]) -> bytes:
    """The bytes SNS signed: ``name\\nvalue\\n`` for each signed field of this ``Type``.

    ``message`` is the JSON-decoded envelope (escapes resolved, as AWS says).
    A missing or non-string field is refused; a null ``Subject`` counts as
    absent, as in AWS's PHP validator (``isset``).
    """
    kind = message.get("Type")
    fields = SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SignatureError("Type is not an SNS message type")
    parts = []
    for name in fields:
        value = message.get(name)
        if value is None and name in _OPTIONAL:
            continue
        if not isinstance(value, str):
            raise SignatureError(f"SNS field {name} is missing or not a string")
        parts.append(f"{name}\n{value}\n")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape: never AWS's
        raise SignatureError("SNS message is not valid Unicode") from None


class CertificateCache:
    """Public keys of SNS signing certificates, fetched on first use and kept ``ttl`` seconds.

    ``fetch(url) -> bytes`` gets the PEM (default: :func:`~.fetch.fetch_https`);
    only URLs :func:`check_signing_cert_url` accepts are ever passed to it.
    Thread-safe; two threads missing the same URL at once may both fetch it
    (the network call is made outside the lock, so one slow fetch never blocks
    the cached keys). ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        fetch: Fetch | None = None,
        *,
        ttl: float = DEFAULT_CERTIFICATE_TTL,
        max_entries: int = DEFAULT_MAX_CERTIFICATES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0 or max_entries < 1:
            raise ConfigurationError("the certificate cache needs ttl > 0 and max_entries >= 1")
        self._fetch = fetch if fetch is not None else fetch_https
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._keys: OrderedDict[str, tuple[RSAPublicKey, float]] = OrderedDict()
        self._lock = threading.Lock()

    def public_key(self, url: str) -> RSAPublicKey:
        """The RSA key of the certificate at ``url``: cached, or fetched and parsed.

        Raises :class:`SignatureError` (URL not allowed; not an RSA certificate)
        or :class:`~.fetch.FetchError` (the fetch failed, or did not bring a PEM
        certificate: worth a retry).
        """
        url = check_signing_cert_url(url)
        now = self._clock()
        with self._lock:
            cached = self._keys.get(url)
            if cached is not None and cached[1] > now:
                return cached[0]
        key = _certificate_key(fetch_bytes(self._fetch, url))
        with self._lock:
            self._keys.pop(url, None)
            while len(self._keys) >= self._max_entries:
                self._keys.popitem(last=False)
            self._keys[url] = (key, now + self._ttl)
        return key


def fetch_bytes(fetch: Fetch, url: str) -> bytes:
    """``fetch(url)``, any failure of it a :class:`~.fetch.FetchError` (503: SNS retries).

    An injected fetcher raises its own errors (httpx's and urllib3's are no
    ``OSError``) or may return text: either would otherwise escape as a 500
    without Retry-After. Only the exception's class is named: its message may
    hold the URL's token or the remote end's words.
    """
    try:
        result = fetch(url)
    except FetchError:
        raise
    except Exception as error:
        raise FetchError(f"fetching failed: {type(error).__name__}") from None
    if type(result) is not bytes:
        if not isinstance(result, bytes | bytearray):
            raise FetchError(f"the fetcher returned {type(result).__name__}, not bytes")
        result = bytes(result)
    return result


def _certificate_key(pem: bytes) -> RSAPublicKey:
    require_cryptography()
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    try:
        certificate = x509.load_pem_x509_certificate(pem)
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        # Only AWS's own hosts are asked, over HTTPS: something else in the answer is a
        # proxy's error page or a broken transfer, worth a retry (SNS drops on a 4xx).
        raise FetchError("SigningCertURL did not serve a PEM certificate") from None
    if not isinstance(key, RSAPublicKey):
        raise SignatureError("SNS signing certificate does not hold an RSA key")
    return key


def _sns_time(value: object) -> float:
    if not isinstance(value, str):
        raise SignatureError("SNS field Timestamp is missing or not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SignatureError("SNS Timestamp is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # SNS writes UTC ("...Z")
    return moment.timestamp()


def verify_sns(
    message: Mapping[str, object],
    certificates: CertificateCache,
    *,
    versions: Collection[str] = ("1", "2"),
    max_age: float | None = None,
    now: float | None = None,
) -> None:
    """Check an SNS message's signature; raise :class:`SignatureError` if it is not authentic.

    ``message`` is the JSON-decoded envelope; ``certificates`` fetches and keeps
    the signing keys. ``versions``: the ``SignatureVersion`` values accepted
    (``("2",)`` once a topic is set to SHA-256 refuses a v1 downgrade: the
    version itself is not signed). ``max_age``: refuse a ``Timestamp`` older
    than this many seconds (None: no window; AWS publishes none, a retried
    message keeps its Timestamp, and custom delivery policies retry for up to
    an hour, so a window under an hour and a few minutes loses events).

    Everything that can be checked without the network is checked before the
    certificate is fetched. Raises :class:`~.fetch.FetchError` when the
    certificate cannot be fetched (answer 503, never 401: SNS counts a 4xx as
    delivered and would not retry).
    """
    require_cryptography()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    version = message.get("SignatureVersion")
    if not isinstance(version, str) or version not in _HASHES or version not in versions:
        raise SignatureError("SignatureVersion is not one this endpoint accepts")
    algorithm = hashes.SHA1() if _HASHES[version] == "SHA1" else hashes.SHA256()
    raw_signature = message.get("Signature")
    if not isinstance(raw_signature, str) or not raw_signature:
        raise SignatureError("SNS field Signature is missing or not a string")
    signature = decode_base64(raw_signature, what="SNS Signature")
    url = check_signing_cert_url(message.get("SigningCertURL"))
    data = sns_string_to_sign(message)
    if max_age is not None:
        check_timestamp(_sns_time(message.get("Timestamp")), max_age=max_age, now=now)
    key = certificates.public_key(url)
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SignatureError("SNS signature does not verify with its certificate") from None


def sign_sns(private_key: RSAPrivateKey, message: Mapping[str, object]) -> str:
    """The ``Signature`` SNS would send for ``message`` (its ``SignatureVersion``), for tests."""
    require_cryptography()
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    algorithm = hashes.SHA1() if message.get("SignatureVersion") == "1" else hashes.SHA256()
    raw = private_key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    return base64.b64encode(raw).decode("ascii")
