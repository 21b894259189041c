"""The store contract, continued: rejected records, and anything the parser accepts is recorded.

Run against every shipped store (``store_case``, see ``tests/store_cases.py``).
The events are built by the real Postmark parser from bodies holding the
values that broke stores before (issue 10): long types, addresses and ids, NUL
characters, addresses that only Unicode case folding matches.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bounce_middleware import Bounce, BounceKind, ClaimState
from bounce_middleware.providers.postmark import parse_postmark
from bounce_middleware.store import rejection_key
from tests.store_cases import StoreCase

LEASE = 60.0
#: A key longer than this cannot be kept in a unique index on every database
#: (MySQL's VARCHAR(255)); PostgreSQL's btree entries stop at ~2.7 KB.
KEY_LIMIT = 255


def postmark_body(**fields: Any) -> bytes:
    """A Postmark bounce webhook body; ``fields`` replace (or, as None, remove) fields."""
    payload: dict[str, Any] = {
        "RecordType": "Bounce",
        "ID": 4323372036,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "welcome",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "ann@example.com",
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Welcome",
    }
    payload.update(fields)
    return json.dumps({k: v for k, v in payload.items() if v is not None}).encode()


def with_id(digits: str) -> bytes:
    """A body whose ID is the JSON integer ``digits`` (json.dumps would refuse past 4,300)."""
    return postmark_body(ID=0).replace(b'"ID": 0', b'"ID": ' + digits.encode())


def parse(body: bytes) -> Bounce:
    """The event the real Postmark parser makes of ``body`` (which it must accept)."""
    [parsed] = parse_postmark(body).events
    return parsed


def record_once(case: StoreCase, bounce: Bounce) -> None:
    """Deliver ``bounce`` as the middleware does, then check a redelivery runs nothing."""
    claim = case.store.claim(bounce, lease_seconds=LEASE)
    assert claim.state is ClaimState.NEW
    case.store.complete(claim, "tests.handler", finished=True)
    again = case.store.claim(bounce, lease_seconds=LEASE)
    assert (again.state, again.completed) == (ClaimState.DONE, frozenset({"tests.handler"}))


# -- rejected records --------------------------------------------------------

REFUSED = b'\xef\xbb\xbf{"ID": "not a number", "bytes": "\xff\x00"}'


def test_reject_keeps_the_request_for_replay(store_case: StoreCase) -> None:
    store = store_case.store
    key = store.reject("postmark", REFUSED, "field ID must be an integer, not a string")
    assert key == rejection_key("postmark", REFUSED)
    assert key.startswith("postmark:rejected:sha256:")
    [record] = store.records(rejected=True)
    assert record.rejected
    assert (record.key, record.provider, record.email, record.kind, record.type) == (
        key,
        "postmark",
        "",
        BounceKind.UNKNOWN,
        "",
    )
    assert record.reason == "field ID must be an integer, not a string"
    assert record.body == REFUSED
    assert not record.finished
    assert record.completed == frozenset()
    assert record.received_at.tzinfo is not None
    assert abs((datetime.now(UTC) - record.received_at).total_seconds()) < 60


def test_reject_keeps_a_provider_and_body_once_with_the_first_reason(
    store_case: StoreCase,
) -> None:
    store = store_case.store
    first = store.reject("postmark", REFUSED, "the first reason")
    assert store.reject("postmark", REFUSED, "a later reason") == first
    other_body = store.reject("postmark", REFUSED + b" ", "another body")
    other_provider = store.reject("sendgrid", REFUSED, "another provider")
    assert len({first, other_body, other_provider}) == 3
    records = store.records(rejected=True)
    assert [r.key for r in records] == [other_provider, other_body, first]
    assert [r.reason for r in records] == ["another provider", "another body", "the first reason"]
    assert [r.key for r in store.records(rejected=True, limit=1)] == [other_provider]


def test_rejected_records_are_listed_only_with_rejected_true(store_case: StoreCase) -> None:
    store = store_case.store
    claim = store.claim(parse(postmark_body(ID=1, Type="Unknown")), lease_seconds=LEASE)
    rejected = store.reject("postmark", REFUSED, "refused")
    assert [r.key for r in store.records()] == ["postmark:1"]
    assert [r.key for r in store.records(unfinished=True)] == ["postmark:1"]
    assert [r.key for r in store.records(kind=BounceKind.UNKNOWN)] == ["postmark:1"]
    assert [r.key for r in store.records(rejected=True)] == [rejected]
    assert [r.key for r in store.records(rejected=True, unfinished=True)] == [rejected]
    assert [r.key for r in store.records(rejected=True, kind=BounceKind.UNKNOWN)] == [rejected]
    # A rejected record has no kind and no address to match.
    assert store.records(rejected=True, kind=BounceKind.HARD) == []
    assert store.records(rejected=True, email="ann@example.com") == []
    store.release(claim, finished=True)
    assert store.records(unfinished=True) == []
    assert [r.key for r in store.records(rejected=True, unfinished=True)] == [rejected]


def test_resolve_marks_a_rejected_record_replayed(store_case: StoreCase) -> None:
    store = store_case.store
    kept = store.reject("postmark", REFUSED, "refused")
    other = store.reject("postmark", b"{}", "required field ID is missing")
    store.resolve(kept)
    store.resolve(kept)
    by_key = {r.key: r for r in store.records(rejected=True)}
    assert by_key[kept].finished
    assert not by_key[other].finished
    assert [r.key for r in store.records(rejected=True, unfinished=True)] == [other]
    # Resolving is not claiming: no accepted event appeared.
    assert store.records() == []


def test_a_rejected_record_is_never_claimable(store_case: StoreCase) -> None:
    store = store_case.store
    key = store.reject("postmark", REFUSED, "refused")
    # Even an event whose key is spelled exactly like the rejected record's.
    twin = Bounce(
        provider="postmark",
        id=key.removeprefix("postmark:"),
        email="ann@example.com",
        kind=BounceKind.HARD,
        type="HardBounce",
        body=b"{}",
    )
    assert twin.key == key
    claim = store.claim(twin, lease_seconds=LEASE)
    assert claim.state is ClaimState.NEW
    store.complete(claim, "tests.handler", finished=True)
    [event] = store.records()
    assert (event.key, event.finished, event.rejected, event.body) == (key, True, False, b"{}")
    [rejected] = store.records(rejected=True)
    assert (rejected.key, rejected.finished, rejected.body) == (key, False, REFUSED)


# -- anything the parser accepts, every store records ------------------------


def test_a_type_longer_than_64_characters_is_recorded(store_case: StoreCase) -> None:
    type_ = "ProviderSpecificBounceTypeNobodyExpected" * 5
    bounce = parse(postmark_body(Type=type_))
    assert len(bounce.type) == 200
    record_once(store_case, bounce)
    [record] = store_case.store.records()
    assert (record.type, record.kind) == (type_, BounceKind.UNKNOWN)


def test_an_address_longer_than_320_characters_is_recorded_and_found(
    store_case: StoreCase,
) -> None:
    # Beyond RFC limits and beyond a PostgreSQL index entry (~2.7 KB), and incompressible.
    local = "".join(f"{n:x}" for n in range(2000))[:3000]
    email = f"{local}@Example.COM"
    bounce = parse(postmark_body(Email=email))
    record_once(store_case, bounce)
    [record] = store_case.store.records(email=email.upper())
    assert record.email == email


def test_an_id_of_4000_digits_is_recorded_under_a_bounded_key(store_case: StoreCase) -> None:
    digits = "9" * 3999 + "1"
    bounce = parse(with_id(digits))
    assert bounce.id == digits
    # The core keeps keys bounded whatever the id (it digests long ones): stores rely on it.
    assert len(bounce.key) <= KEY_LIMIT, f"Bounce.key is {len(bounce.key)} characters"
    record_once(store_case, bounce)
    neighbour = parse(
        postmark_body(ID=0).replace(b'"ID": 0', b'"ID": ' + digits[:-1].encode() + b"2")
    )
    assert neighbour.key != bounce.key
    record_once(store_case, neighbour)
    assert {r.key for r in store_case.store.records()} == {bounce.key, neighbour.key}


def test_nul_characters_are_recorded_as_replacement_characters(store_case: StoreCase) -> None:
    body = postmark_body(
        Email="ann\u0000@example.com",
        Type="Hard\u0000Bounce",
        Description="before\u0000after",
        Details="smtp;550\u0000",
        Subject="\u0000",
        Tag="t\u0000",
    )
    bounce = parse(body)
    assert "\x00" in bounce.email and "\x00" in bounce.type and "\x00" in bounce.description
    record_once(store_case, bounce)
    [record] = store_case.store.records()
    assert record.email == "ann\ufffd@example.com"
    assert record.type == "Hard\ufffdBounce"
    assert record.body == body
    assert [r.key for r in store_case.store.records(email="ANN\u0000@example.com")] == [record.key]


def test_long_free_text_fields_are_recorded(store_case: StoreCase) -> None:
    bounce = parse(
        postmark_body(
            Description="d" * 100_000,
            Details="smtp;550 " + "é" * 50_000,
            Subject="s" * 10_000,
            MessageID="m" * 5_000,
            Tag="t" * 5_000,
            Name="n" * 5_000,
        )
    )
    record_once(store_case, bounce)
    assert store_case.store.records()[0].body == bounce.body


def test_an_event_without_an_address_is_recorded(store_case: StoreCase) -> None:
    # A real Unsubscribe record arrived with neither Email nor BouncedAt.
    bounce = parse(postmark_body(Type="Unsubscribe", TypeCode=16, Email=None, BouncedAt=None))
    assert bounce.email == ""
    record_once(store_case, bounce)
    [record] = store_case.store.records()
    assert (record.email, record.kind) == ("", BounceKind.UNSUBSCRIBE)


#: (stored address, a query that must find it): Unicode case folding and NFKC.
FOLDED_PAIRS = (
    ("Émile@example.com", "émile@example.com"),
    ("ÉMILE@EXAMPLE.COM", "émile@example.com"),
    ("STRASSE@example.de", "straße@example.de"),
    ("straße@example.de", "STRASSE@EXAMPLE.DE"),
    ("E\u0301mile@example.com", "émile@example.com"),  # decomposed vs precomposed
    ("ﬁona@example.com", "FIONA@example.com"),  # the "fi" ligature
    ("ΣΊΣΥΦΟΣ@example.gr", "σίσυφος@example.gr"),  # final sigma
    ("ＡＮＮ@example.com", "ann@example.com"),  # fullwidth letters
)


def test_addresses_match_with_unicode_case_folding(store_case: StoreCase) -> None:
    store = store_case.store
    for n, (stored, _) in enumerate(FOLDED_PAIRS):
        record_once(store_case, parse(postmark_body(ID=n + 1, Email=stored)))
    for n, (stored, query) in enumerate(FOLDED_PAIRS):
        found = [r.key for r in store.records(email=query)]
        # Each query finds its address (and any other address that folds the same).
        assert f"postmark:{n + 1}" in found, (stored, query, found)
    assert [r.email for r in store.records(email="émile@example.com")] == [
        "E\u0301mile@example.com",
        "ÉMILE@EXAMPLE.COM",
        "Émile@example.com",
    ]
    # Folding is not transliteration: the unaccented address is another one.
    assert store.records(email="emile@example.com") == []
    assert store.records(email="strase@example.de") == []
