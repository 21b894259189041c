"""One vocabulary: the per-app ``BounceState`` of Flask and of Pyramid, field for field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa

from bounce_middleware.adapters.flask import BounceExtension
from bounce_middleware.adapters.flask import BounceState as FlaskState
from bounce_middleware.adapters.pyramid import REGISTRY_KEY, wrap
from bounce_middleware.adapters.pyramid import BounceState as PyramidState
from bounce_middleware.adapters.sqlalchemy import DEFAULT_NOTICE, UserBounceHandler
from tests.test_flask import create_app
from tests.test_pyramid import Base, User, make_config

#: What both states hold, under these names.
SHARED = {
    "middleware",
    "user_handler",
    "user_lookup",
    "notice",
    "notice_message",
    "notice_category",
}


def names(state_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(state_class)}


def test_flask_and_pyramid_states_use_the_same_field_names() -> None:
    assert names(FlaskState) >= SHARED
    assert names(PyramidState) >= SHARED
    # Pyramid keeps what wrap() needs until then; Flask builds the middleware at once.
    assert names(PyramidState) - SHARED == {"middleware_options", "handlers", "store"}
    assert names(FlaskState) - SHARED == set()


def test_the_pyramid_state_after_wrap(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite3"
    engine = sa.create_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    router = make_config(db).make_wsgi_app()
    state = router.registry[REGISTRY_KEY]
    assert state.middleware is None  # not wrapped yet
    middleware = wrap(router)
    assert state.middleware is middleware
    assert isinstance(state.user_handler, UserBounceHandler)
    assert state.user_handler.user_model is User
    assert state.user_lookup is None  # request.identity
    assert state.notice is True
    assert state.notice_message == DEFAULT_NOTICE
    # Pyramid's default flash queue, the one request.session.pop_flash() reads.
    assert state.notice_category == ""
    assert state.middleware_options["path"] == "/postmark/bounce"
    with pytest.warns(DeprecationWarning, match="options is now BounceState.middleware_options"):
        assert state.options is state.middleware_options
    engine.dispose()


def test_the_pyramid_state_with_settings(tmp_path: Path) -> None:
    settings = {
        "bounce.notice_message": "{email} bounced",
        "bounce.notice_category": "warning",
        "bounce.user_lookup": "tests.test_pyramid:header_user",
        "bounce.notice": "false",
    }
    state = make_config(tmp_path / "app.sqlite3", **settings).make_wsgi_app().registry[REGISTRY_KEY]
    assert state.notice is False
    assert (state.notice_message, state.notice_category) == ("{email} bounced", "warning")
    assert state.user_lookup.__name__ == "header_user"


def test_the_flask_state(tmp_path: Path) -> None:
    app = create_app(tmp_path / "app.sqlite3", BOUNCE_NOTICE_CATEGORY="danger")
    state = BounceExtension.state(app)
    assert state.middleware is app.wsgi_app
    assert isinstance(state.user_handler, UserBounceHandler)
    assert state.user_lookup is None  # Flask-Login's current_user
    assert state.notice is True
    assert (state.notice_message, state.notice_category) == (DEFAULT_NOTICE, "danger")
