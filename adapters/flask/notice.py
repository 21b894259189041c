"""The one-time flash of a user's bounce notice, on the GET requests of a logged-in user."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import flask

from bounce_middleware.adapters.sqlalchemy import take_notice
from bounce_middleware.errors import ConfigurationError
from bounce_middleware.handlers import NOTICE_METHODS

if TYPE_CHECKING:
    from .extension import BounceState

__all__ = ["UserLookup", "current_user", "flash_notice", "require_flask_login"]

#: Returns ``(user id, current e-mail address)`` of the logged-in user, or None.
UserLookup = Callable[[], "tuple[object, str] | None"]


def require_flask_login() -> None:
    """Fail at start-up, naming the fix, when the default user lookup cannot work."""
    try:
        import flask_login  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "the bounce notice reads Flask-Login's current_user: install Flask-Login, "
            "or set BOUNCE_USER_LOOKUP (or BounceExtension(user_lookup=...))"
        ) from exc


def current_user(state: BounceState) -> tuple[object, str] | None:
    """``(user id, current address)`` of the request's user, or None when anonymous."""
    if state.user_lookup is not None:
        return state.user_lookup()
    from flask_login import current_user as user

    if not user or not user.is_authenticated:
        return None
    assert state.user_handler is not None
    return state.user_handler.identity(user)


def flash_notice(state: BounceState) -> None:
    """``before_request``: flash the logged-in user's pending notice, once, on a GET.

    Not on other methods (the core's ``NOTICE_METHODS``): a HEAD response has no
    body to show it in, and a POST may be the very form that changes the address.
    """
    request = flask.request
    if request.method not in NOTICE_METHODS or request.endpoint == "static":
        return
    user = current_user(state)
    if user is None:
        return
    user_id, email = user
    assert state.user_handler is not None  # the notice is on only with a user handler
    # The user handler's own unit of work: a session of the app's session class
    # (its binds), never the request's db.session, which the view may still use.
    text = take_notice(state.user_handler.unit_of_work, user_id, email, state.notice_message)
    if text is not None:
        flask.flash(text, state.notice_category)
