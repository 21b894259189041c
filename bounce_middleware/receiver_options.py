"""The receiver's options, checked when it is built (fail at start-up, never on a webhook)."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import ConfigurationError
from .providers.base import Provider
from .store import Store, check_store

#: SendGrid batches reach 768 KB; Postmark's bodies are a few KiB. A provider whose batches
#: are larger (Mandrill's 1,000 form-encoded events) says so in its ``max_body_size``.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024

_PROVIDER_METHODS = ("name", "methods", "refuse_status", "retry_status", "authenticate", "parse")


def check_options(
    routes: Mapping[str, Provider],
    store: Store | None,
    handoff: object,
    max_body_size: int | None,
    lease_seconds: float,
    retry_after: int,
) -> None:
    """Raise :class:`ConfigurationError` naming the first option that cannot work."""
    if not routes:
        raise ConfigurationError("no routes configured: give routes={path: provider}")
    for path, provider in routes.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"a route's path must start with '/', got {path!r}")
        missing = [m for m in _PROVIDER_METHODS if not hasattr(provider, m)]
        if missing:
            raise ConfigurationError(
                f"route {path!r}: {type(provider).__name__} is not a provider "
                f"(it lacks {', '.join(missing)})"
            )
    if max_body_size is not None and max_body_size < 1:
        raise ConfigurationError("max_body_size must be a positive number of bytes")
    if not lease_seconds > 0:
        # A lease of 0 would let a redelivery run the handlers of a running delivery.
        raise ConfigurationError("lease_seconds must be a positive number of seconds")
    if retry_after < 0:
        raise ConfigurationError("retry_after must be a number of seconds, 0 or more")
    if store is not None:
        check_store(store)
    if handoff is not None:
        if store is None:
            # The queue carries keys only: the worker reads each event from the store.
            raise ConfigurationError(
                "handoff= needs a store: the webhook records each event there and "
                "the worker reads it back by its key"
            )
        if not callable(getattr(handoff, "enqueue", None)):
            raise ConfigurationError(
                f"handoff {type(handoff).__name__} has no enqueue(keys) method"
            )


def body_limits(routes: Mapping[str, Provider], max_body_size: int | None) -> dict[str, int]:
    """The largest body read on each route: ``max_body_size`` when given, else the
    default, or the provider's own ``max_body_size`` if larger (Mandrill's batches)."""
    if max_body_size is not None:
        return dict.fromkeys(routes, max_body_size)
    return {
        path: max(DEFAULT_MAX_BODY_SIZE, getattr(provider, "max_body_size", 0))
        for path, provider in routes.items()
    }
