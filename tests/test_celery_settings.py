"""The Celery hand-off configured as each framework configures the middleware: flat
``bounce.*`` settings (Pyramid's ``.ini``), Flask's ``BOUNCE_*`` config and Django's
``BOUNCE_MIDDLEWARE``; and in each, the queued event delivered by Celery's own task
with the application's user-store handler, in the application's scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery
from webtest import TestApp

from bounce_middleware import BounceMiddleware, ConfigurationError
from bounce_middleware.celery_tasks import DELIVER_TASK, CeleryHandoff, receiver_for
from bounce_middleware.testing import postmark_bounce

from . import celery_app
from .redis_server import RedisServer

ROUTES = {
    "bounce.routes": "/hooks/postmark postmark",
    "bounce.postmark.credentials": "postmark:celery-tests-webhook-password",
    "bounce.store": "memory://",
}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def celery(redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Celery:
    """The app settings name as ``tests.celery_app:settings_celery``, on the test's broker."""
    app = celery_app.make_celery(redis.url)
    monkeypatch.setattr(celery_app, "settings_celery", app)
    return app


def handoff_of(middleware: BounceMiddleware) -> CeleryHandoff:
    handoff = middleware.receiver.handoff
    assert isinstance(handoff, CeleryHandoff)
    return handoff


def test_flat_settings_build_a_celery_handoff_with_typed_options() -> None:
    middleware = BounceMiddleware.from_settings(
        celery_app.root_app,
        {
            **ROUTES,
            "bounce.celery_app": "tests.celery_app:settings_celery",
            "bounce.celery_queue": "bounces",
            "bounce.celery_max_retries": "3",
            "bounce.celery_retry_backoff": "1.5",
            "bounce.celery_retry_backoff_max": "60",
            "bounce.celery_retry_jitter": "false",
            "bounce.celery_sweep_older_than": "600",
            "bounce.celery_publish_retries": "0",
        },
    )
    handoff = handoff_of(middleware)
    assert handoff.app is celery_app.settings_celery
    assert handoff.receiver is middleware.receiver
    assert (handoff.queue, handoff.max_retries, handoff.retry_backoff) == ("bounces", 3, 1.5)
    assert (handoff.retry_backoff_max, handoff.retry_jitter) == (60.0, False)
    assert (handoff.sweep_older_than, handoff.publish_retries) == (600.0, 0)


def test_a_handoff_object_by_dotted_name() -> None:
    middleware = BounceMiddleware.from_settings(
        celery_app.root_app, {**ROUTES, "bounce.handoff": "tests.test_celery_settings:HANDOFF"}
    )
    assert middleware.receiver.handoff is HANDOFF


HANDOFF = CeleryHandoff(celery_app.settings_celery)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"bounce.celery_max_retries": "3"},
            "setting 'bounce.celery_max_retries' needs 'bounce.celery_app'",
        ),
        (
            {"bounce.celery_app": "tests.celery_app:USER"},
            "setting 'bounce.celery_app' is invalid: expected a Celery app",
        ),
        (
            {"bounce.celery_app": "tests.celery_app:settings_celery", "bounce.celery_queue": ""},
            None,
        ),
        (
            {
                "bounce.celery_app": "tests.celery_app:settings_celery",
                "bounce.celery_max_retries": "-1",
            },
            "setting 'bounce.celery_max_retries' is invalid: expected a whole number",
        ),
        (
            {
                "bounce.celery_app": "tests.celery_app:settings_celery",
                "bounce.celery_retry_backoff": "0",
            },
            "setting 'bounce.celery_retry_backoff' is invalid: expected a positive number",
        ),
        (
            {
                "bounce.celery_app": "tests.celery_app:settings_celery",
                "bounce.handoff": "tests.test_celery_settings:HANDOFF",
            },
            "settings 'bounce.handoff' and 'bounce.celery_app' both hand events off",
        ),
        (
            {"bounce.handoff": "tests.celery_app:USER"},
            "setting 'bounce.handoff' is invalid: expected a handoff",
        ),
    ],
)
def test_settings_errors_name_the_key(settings: dict[str, str], message: str | None) -> None:
    if message is None:  # an empty queue is a string like any other: Celery's to judge
        BounceMiddleware.from_settings(celery_app.root_app, {**ROUTES, **settings})
        return
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        BounceMiddleware.from_settings(celery_app.root_app, {**ROUTES, **settings})


def test_settings_without_a_store_refuse_the_handoff() -> None:
    settings = {k: v for k, v in ROUTES.items() if k != "bounce.store"}
    with pytest.raises(ConfigurationError, match="handoff= needs a store"):
        BounceMiddleware.from_settings(
            celery_app.root_app,
            {**settings, "bounce.celery_app": "tests.celery_app:settings_celery"},
        )


def deliver_queued(celery: Celery, redis: RedisServer, key: str) -> None:
    """What a worker does with the one message the webhook queued."""
    assert redis.queued("bounce-tests") == 1
    assert celery.tasks[DELIVER_TASK].apply(args=(key,)).get() == "done"


# --- Flask ------------------------------------------------------------------------------


def test_flask_config_hands_off_and_the_task_runs_in_the_app_context(
    tmp_path: Path, celery: Celery, redis: RedisServer
) -> None:
    from bounce_middleware.adapters.flask import BounceExtension

    from .test_flask import create_app, log_in, notices, post_bounce

    app = create_app(
        tmp_path / "app.sqlite3",
        BOUNCE_CELERY_APP="tests.celery_app:settings_celery",
        BOUNCE_CELERY_MAX_RETRIES=2,
    )
    middleware = BounceExtension.state(app).middleware
    assert handoff_of(middleware).max_retries == 2
    testapp = TestApp(app)
    payload = postmark_bounce(email="ann@example.com")
    assert post_bounce(testapp, payload) == "accepted; queued for the handlers\n"
    assert notices(app) == []
    deliver_queued(celery, redis, f"postmark:{payload['ID']}")
    [notice] = notices(app)
    assert notice.user_id == "1"
    assert log_in(testapp, "ann@example.com").startswith("[warning] We could not deliver")


def test_flask_config_errors_use_flask_names(tmp_path: Path) -> None:
    from .test_flask import create_app

    with pytest.raises(ConfigurationError, match="BOUNCE_CELERY_QUEUE' needs 'BOUNCE_CELERY_APP'"):
        create_app(tmp_path / "app.sqlite3", BOUNCE_CELERY_QUEUE="bounces")


# --- Pyramid ----------------------------------------------------------------------------


def test_pyramid_ini_settings_hand_off_and_the_task_runs_in_a_transaction(
    tmp_path: Path, celery: Celery, redis: RedisServer
) -> None:
    from bounce_middleware.adapters.pyramid import wrap
    from bounce_middleware.adapters.sqlalchemy import create_all

    from .test_pyramid import Base, User, make_config, notices
    from .test_pyramid import post_bounce as post_pyramid

    db = tmp_path / "app.sqlite3"
    engine = sa.create_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    create_all(engine)
    with sa.orm.Session(engine) as session, session.begin():
        session.add(User(id=1, email="ann@example.com"))
    middleware = wrap(
        make_config(
            db,
            **{
                "bounce.celery_app": "tests.celery_app:settings_celery",
                "bounce.celery_retry_backoff": "5",
            },
        )
    )
    assert handoff_of(middleware).retry_backoff == 5.0
    testapp = TestApp(middleware)
    payload = postmark_bounce(email="ann@example.com")
    assert post_pyramid(testapp, payload).text == "accepted; queued for the handlers\n"
    assert notices(engine) == []
    deliver_queued(celery, redis, f"postmark:{payload['ID']}")
    assert notices(engine) == [("1", "ann@example.com", False)]
    testapp.get("/login/1")
    assert testapp.get("/").text.startswith("We could not deliver e-mail to ann@example.com")
    engine.dispose()


# --- Django -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_django_settings_hand_off_and_autodiscovered_tasks_build_the_worker_side(
    celery: Celery, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    from bounce_middleware.adapters.django.models import BounceNotice
    from bounce_middleware.adapters.django.wsgi import get_wsgi_application

    from .django_app.support import post_bounce as post_django
    from .test_django import SETTINGS

    get_user_model().objects.create_user(
        username="ann", password="ann-pw", contact_email="ann@example.com"
    )
    settings = {**SETTINGS, "CELERY_APP": "tests.celery_app:settings_celery"}
    with override_settings(BOUNCE_MIDDLEWARE=settings):
        testapp = TestApp(get_wsgi_application())
        payload = postmark_bounce(email="ann@example.com")
        assert post_django(testapp, payload).text == "accepted; queued for the handlers\n"
        assert not BounceNotice.objects.exists()
        # A worker process has built no WSGI application: autodiscovery imports the
        # adapter's tasks module, whose loader builds the middleware from the settings.
        monkeypatch.setattr("bounce_middleware.celery_tasks._BOUND", {})
        celery.autodiscover_tasks(["bounce_middleware.adapters.django"], force=True)
        receiver = receiver_for(celery)
        assert handoff_of_receiver(receiver).app is celery
        # A worker of another Celery app is not given this configuration.
        from bounce_middleware.adapters.django.tasks import django_receiver

        assert django_receiver(celery_app.make_celery("redis://127.0.0.1:9/0")) is None
        deliver_queued(celery, redis, f"postmark:{payload['ID']}")
    notice = BounceNotice.objects.get()
    assert notice.email == "ann@example.com"


def handoff_of_receiver(receiver: Any) -> CeleryHandoff:
    handoff = receiver.handoff
    assert isinstance(handoff, CeleryHandoff)
    return handoff


def test_django_settings_errors_use_django_names() -> None:
    from bounce_middleware.adapters.django.conf import read_state

    from .test_django import SETTINGS

    with pytest.raises(
        ConfigurationError,
        match=r'setting BOUNCE_MIDDLEWARE\["CELERY_MAX_RETRIES"\] needs '
        r'BOUNCE_MIDDLEWARE\["CELERY_APP"\], the Celery app',
    ):
        read_state({**SETTINGS, "CELERY_MAX_RETRIES": 3})
    state = read_state(
        {**SETTINGS, "CELERY_APP": "tests.celery_app:settings_celery", "STORE": "memory://"}
    )
    assert isinstance(state.middleware["handoff"], CeleryHandoff)
