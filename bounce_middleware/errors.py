"""Exceptions raised by bounce-middleware.

Each mixes in the standard library base a caller would naturally catch, so
``except ValueError`` keeps working for code that does not know this library.
"""

from __future__ import annotations


class BounceError(Exception):
    """Base class of every error this library raises."""


class ConfigurationError(BounceError, ValueError):
    """The middleware, a store or an adapter was configured wrongly."""


class ImproperlyInstalled(ConfigurationError, ImportError):
    """An adapter's framework is not installed; the message names the extra."""

    def __init__(self, extra: str, missing: str) -> None:
        super().__init__(
            f'{missing} is not installed; install it with: pip install "bounce-middleware[{extra}]"'
        )
        self.extra = extra


class PayloadError(BounceError, ValueError):
    """A webhook body can never be accepted (answered 400, so the provider drops it).

    ``reason`` is one line, safe to send back and to log: it never quotes the body.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthorized(BounceError):
    """A request is not from the provider (answered 401; the client is told no more).

    ``reason`` is for the log: which check failed, never a secret, signature or
    body. ``challenge`` is a ``WWW-Authenticate`` value (HTTP Basic). ``keep``
    marks a request that is authentic but not authorised (an SNS topic that is
    not configured): the store keeps it as a rejected record and the log says
    what to configure, because the provider will not send it again.
    """

    def __init__(self, reason: str, *, challenge: str | None = None, keep: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.challenge = challenge
        self.keep = keep


class TemporaryFailure(BounceError):
    """Something a retry can fix failed on our side (e.g. fetching a signing certificate).

    Answered 503 with ``Retry-After`` (or the provider's retry status), so the
    provider sends the request again. ``reason`` is one line, safe to log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreUnavailable(BounceError):
    """The store could not be read or written; the delivery should be retried (503)."""
