"""replay with several routes of one provider finds the route that knows each record."""

from __future__ import annotations

from typing import Any

from bounce_middleware import Bounce, BounceMiddleware, MemoryStore
from bounce_middleware.cli.replay import replay_event, replay_rejected
from bounce_middleware.providers import AmazonSES
from bounce_middleware.request import post
from bounce_middleware.testing import (
    TEST_SNS_TOPIC_ARN,
    ses_bounce,
    sign_ses_request,
    sns_test_fetcher,
)

OTHER_TOPIC = "arn:aws:sns:eu-west-1:123456789012:other-account-bounces"


def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def test_an_event_of_the_second_route_of_a_provider_replays() -> None:
    store = MemoryStore()
    broken = {"on": True}
    ran: list[Bounce] = []

    def handler(bounce: Bounce) -> None:
        if broken["on"]:
            raise RuntimeError("the mail server is down")
        ran.append(bounce)

    middleware = BounceMiddleware(
        site,
        routes={
            "/ses/test": AmazonSES(topic_arns=[TEST_SNS_TOPIC_ARN], fetch=sns_test_fetcher),
            # Listed last, so the one a name lookup finds: it refuses the TEST topic's records.
            "/ses/other": AmazonSES(topic_arns=[OTHER_TOPIC], fetch=sns_test_fetcher),
        },
        handlers=[handler],
        store=store,
    )
    headers, body = sign_ses_request(ses_bounce(email="ann@example.com"))
    assert middleware.answer(post("/ses/test", body, headers)).status == 500
    [record] = store.records(unfinished=True)
    broken["on"] = False
    ok, line = replay_event(middleware, record, dry_run=False)
    assert ok, line
    assert [b.email for b in ran] == ["ann@example.com"]


def test_a_rejected_record_of_a_provider_is_tried_on_each_of_its_routes() -> None:
    store = MemoryStore()
    other = AmazonSES(topic_arns=[OTHER_TOPIC], fetch=sns_test_fetcher)
    middleware = BounceMiddleware(site, routes={"/ses/other": other}, store=store)
    headers, body = sign_ses_request(ses_bounce(email="bob@example.com"))
    # A topic nobody configured: refused (401) and kept.
    assert middleware.answer(post("/ses/other", body, headers)).status == 401
    [record] = store.records(rejected=True)
    ok, line = replay_rejected(middleware, store, record, dry_run=True)
    assert not ok and "still refused" in line
    # After the upgrade: a second route for the TEST topic, listed before the first.
    existing = dict(middleware.routes)
    middleware.routes.clear()
    middleware.routes["/ses/test"] = AmazonSES(
        topic_arns=[TEST_SNS_TOPIC_ARN], fetch=sns_test_fetcher
    )
    middleware.routes.update(existing)
    ok, line = replay_rejected(middleware, store, record, dry_run=False)
    assert ok, line
    assert [r.email for r in store.records()] == ["bob@example.com"]
