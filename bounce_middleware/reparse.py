"""A stored event read back: its body parsed again by its route's provider.

A store keeps each event's ``body`` (the bytes its provider's parser accepts
again) and the provider's name, not the parsed event. Whoever runs an event's
handlers later (``bounce-middleware replay``, a task-queue worker) finds it
here, the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import PayloadError, TemporaryFailure
from .model import Bounce
from .providers.base import Provider
from .request import post
from .store import Record
from .text import loggable


class NotReplayable(Exception):
    """A stored event whose handlers cannot run again as it is; ``reason`` says why.

    The reason is one line, its stored values escaped (they came from a webhook).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def providers_named(routes: Mapping[str, Provider], name: str) -> list[Provider]:
    """Every configured provider named ``name`` (two SES routes for two accounts...)."""
    found: dict[int, Provider] = {}
    for provider in routes.values():
        if provider.name == name:
            found.setdefault(id(provider), provider)
    return list(found.values())


def stored_event(routes: Mapping[str, Provider], record: Record) -> Bounce:
    """The event of ``record``, parsed again from its stored body by a route's provider.

    Without the request's headers: the store kept only what was authenticated.
    Raises :class:`NotReplayable` when there is no body, no route of the
    record's provider, or when no such route parses the body into an event
    with the record's key.
    """
    if not record.body:
        raise NotReplayable("the store kept no body for it")
    providers = providers_named(routes, record.provider)
    if not providers:
        configured = ", ".join(sorted({p.name for p in routes.values()}))
        raise NotReplayable(
            f"its provider {loggable(record.provider, None)!r} has no route in this "
            f"application (configured: {configured})"
        )
    refusal = ""
    for provider in providers:  # several routes of one provider: the one that knows it
        try:
            parsed = provider.parse(post(body=record.body))
        except (PayloadError, TemporaryFailure) as exc:
            refusal = refusal or exc.reason
            continue
        event = next((e for e in parsed.events if e.key == record.key), None)
        if event is not None:
            return event
    if refusal:
        raise NotReplayable(f"its stored body does not parse: {loggable(refusal, None)}")
    raise NotReplayable("its stored body is not this event")
