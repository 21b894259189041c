"""Bounce.key with a dedup_id: the event is told apart, and no address reaches a key."""

from __future__ import annotations

from bounce_middleware import Bounce, BounceKind


def bounce(**fields: object) -> Bounce:
    base: dict[str, object] = {
        "provider": "amazon_ses",
        "id": "msg-1",
        "email": "ann@example.com",
        "kind": BounceKind.HARD,
        "type": "Bounce",
    }
    return Bounce(**(base | fields))  # type: ignore[arg-type]


def test_a_dedup_id_tells_apart_events_that_share_an_id() -> None:
    ann = bounce(dedup_id="msg-1:ann@example.com")
    bob = bounce(dedup_id="msg-1:bob@example.com", email="bob@example.com")
    assert ann.key != bob.key
    assert ann.key.startswith("amazon_ses:msg-1:") and len(ann.key.rsplit(":", 1)[1]) == 24
    assert bounce(dedup_id="msg-1:ann@example.com").key == ann.key  # stable across retries


def test_keys_never_hold_the_dedup_id_text() -> None:
    # Keys are logged; a dedup_id may hold the recipient's address.
    for event in (
        bounce(dedup_id="msg-1:ann@example.com"),
        bounce(id=None, dedup_id="ann@example.com:1700000000"),
        bounce(id="x" * 300, dedup_id="x:ann@example.com"),
    ):
        assert "ann@example.com" not in event.key
        assert "@" not in event.key


def test_without_an_id_the_key_is_the_dedup_id_digest() -> None:
    key = bounce(id=None, dedup_id="anything").key
    assert (
        key.startswith("amazon_ses:dedup-sha256:")
        and len(key) == len("amazon_ses:dedup-sha256:") + 64
    )


def test_without_a_dedup_id_keys_are_as_before() -> None:
    assert bounce().key == "amazon_ses:msg-1"
    assert bounce(id="x" * 300).key.startswith("amazon_ses:id-sha256:")
