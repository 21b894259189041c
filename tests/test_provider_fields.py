"""What every JSON provider shares: deep nesting never escapes as RecursionError.

A parser must raise nothing but PayloadError for any body. Python's JSON
decoder reads objects nested deeper than its encoder (and the recursive
helpers) can write back, so a body nested some hundreds deep in a field the
parser turns into text (tags, metadata) decoded fine and then crashed with
RecursionError: a 500 retried for a day instead of a rejected record. Each
provider is checked with 600 levels in its tag or metadata fields, called
from a shallow stack and from as deep a one as a web framework adds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bounce_middleware import PayloadError
from bounce_middleware.providers.base import Parsed
from bounce_middleware.providers.brevo import parse_brevo
from bounce_middleware.providers.mailgun_events import parse_mailgun
from bounce_middleware.providers.mailjet_events import parse_mailjet
from bounce_middleware.providers.mandrill_events import parse_mandrill
from bounce_middleware.providers.resend_events import parse_resend
from bounce_middleware.providers.sendgrid import parse_sendgrid
from bounce_middleware.providers.sparkpost import parse_sparkpost
from bounce_middleware.samples.brevo import brevo_event
from bounce_middleware.samples.mailgun import mailgun_event
from bounce_middleware.samples.mailjet import mailjet_event
from bounce_middleware.samples.mandrill import mandrill_body, mandrill_event
from bounce_middleware.samples.resend import resend_event
from bounce_middleware.samples.sendgrid import sendgrid_event
from bounce_middleware.samples.sparkpost import sparkpost_event

DEPTH = 600
NESTED = "nested too deeply"


def nested(depth: int = DEPTH) -> dict[str, Any]:
    """``{"a": {"a": ...}}``, ``depth`` objects deep."""
    top: dict[str, Any] = {}
    inner = top
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return top


def dumps(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


def at_stack_depth(frames: int, call: Callable[[], Parsed]) -> Parsed:
    """``call()`` under ``frames`` more Python frames, as a framework's stack adds."""
    if frames == 0:
        return call()
    return at_stack_depth(frames - 1, call)


def _mailgun(event_data: dict[str, Any]) -> bytes:
    return dumps({"signature": {}, "event-data": event_data})


def _resend_tags() -> bytes:
    return dumps(resend_event("hard", tags={"plan": nested()}))


# Provider -> (parse, a body with one deep event, a body with that event and a good one or
# None when the provider posts one event per body).
CASES: dict[str, tuple[Callable[[bytes], Parsed], bytes, bytes | None]] = {
    "mailjet": (
        parse_mailjet,
        dumps(mailjet_event("hard", Payload=nested())),
        dumps([mailjet_event("hard", Payload=nested()), mailjet_event("soft")]),
    ),
    "sparkpost": (
        parse_sparkpost,
        dumps([sparkpost_event("hard", rcpt_meta={"user": nested()})]),
        dumps([sparkpost_event("hard", rcpt_meta={"user": nested()}), sparkpost_event("soft")]),
    ),
    "brevo": (
        parse_brevo,
        dumps(brevo_event("hard") | {"X-Mailin-custom": nested()}),
        dumps([brevo_event("hard") | {"X-Mailin-custom": nested()}, brevo_event("soft")]),
    ),
    "resend": (parse_resend, _resend_tags(), None),
    "mandrill": (
        parse_mandrill,
        mandrill_body([mandrill_event("hard", msg={"metadata": {"user": nested()}})]),
        mandrill_body(
            [mandrill_event("hard", msg={"metadata": {"user": nested()}}), mandrill_event("soft")]
        ),
    ),
    "mailgun": (parse_mailgun, _mailgun(mailgun_event("hard", user_variables=nested())), None),
    "sendgrid": (
        parse_sendgrid,
        dumps([sendgrid_event("hard", plan=nested())]),
        dumps([sendgrid_event("hard", plan=nested()), sendgrid_event("soft")]),
    ),
}


def outcome(parse: Callable[[bytes], Parsed], body: bytes, frames: int) -> Parsed | PayloadError:
    try:
        return at_stack_depth(frames, lambda: parse(body))
    except PayloadError as exc:
        return exc


@pytest.mark.parametrize("provider", sorted(CASES))
def test_a_deeply_nested_tag_or_metadata_is_refused_never_a_recursion_error(
    provider: str,
) -> None:
    parse, alone, batch = CASES[provider]
    for frames in (0, 100, 300):
        result = outcome(parse, alone, frames)
        if isinstance(result, PayloadError):
            assert NESTED in result.reason
        else:  # refused alone in its batch, or accepted: never written back as text
            assert all(NESTED in r.reason for r in result.rejected)
            assert len(result.events) + len(result.rejected) == 1
        if batch is None:
            continue
        parsed = outcome(parse, batch, frames)
        if isinstance(parsed, PayloadError):  # the decoder itself ran out of stack
            assert parsed.reason == "body is nested too deeply" and frames > 0
            continue
        [good] = parsed.events
        assert good.kind == "soft"
        [rejection] = parsed.rejected
        assert NESTED in rejection.reason
        # replay reads the kept event again: refused again, or (alone, kept as received,
        # never written back) accepted; never a crash
        again = outcome(parse, rejection.body, 0)
        assert not isinstance(again, PayloadError)
        assert [NESTED in r.reason for r in again.rejected] in ([True], [])
        assert len(again.events) + len(again.rejected) == 1


@pytest.mark.parametrize("provider", ["mailgun", "resend"])
def test_a_single_event_provider_refuses_the_body_as_nested_too_deeply(provider: str) -> None:
    parse, alone, _ = CASES[provider]
    with pytest.raises(PayloadError, match="body is nested too deeply"):
        parse(alone)
