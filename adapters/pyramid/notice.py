"""The one-time flash of a user's bounce notice, and the transactions it and the user store use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import transaction
import zope.sqlalchemy
from sqlalchemy import orm

from bounce_middleware.adapters.sqlalchemy import take_notice
from bounce_middleware.adapters.sqlalchemy.sessions import SessionFactory
from bounce_middleware.handlers import NOTICE_METHODS

if TYPE_CHECKING:
    from .config import BounceState

__all__ = [
    "DEFAULT_NOTICE_CATEGORY",
    "UserLookup",
    "current_user",
    "flash_notice",
    "identity_user",
    "notice_tween_factory",
    "transaction_scope",
]

#: The registry key holding the app's ``BounceState``.
REGISTRY_KEY = "bounce_middleware"
#: Pyramid's default flash queue, the one ``request.session.pop_flash()`` reads.
DEFAULT_NOTICE_CATEGORY = ""

#: ``(request) -> (user id, current address)``, or None for an anonymous request.
UserLookup = Callable[[Any], tuple[object, str] | None]


@contextmanager
def transaction_scope(
    session_factory: SessionFactory,
    manager: Any = None,
) -> Iterator[orm.Session]:
    """A session joined to a transaction, committed on success and aborted on error.

    The same wiring as Pyramid's SQLAlchemy cookiecutter (``get_tm_session``):
    ``zope.sqlalchemy.register(session, transaction_manager=tm)``. Without
    ``manager``, a private explicit ``TransactionManager`` is used, so the work
    is independent of any request's ``request.tm``.
    """
    tm = manager if manager is not None else transaction.TransactionManager(explicit=True)
    session = session_factory()
    try:
        with tm:
            # keep_session: closing it is left to us. zope.sqlalchemy would close it
            # after a failed COMMIT without a rollback, and SQLAlchemy, counting the
            # transaction as ended, returns the connection to the pool without its
            # reset: on SQLite that connection kept the database's write lock.
            zope.sqlalchemy.register(session, transaction_manager=tm, keep_session=True)
            yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def identity_user(
    request: Any, *, id_attribute: str, email_attribute: str
) -> tuple[object, str] | None:
    """``request.identity``'s id and address, or None if anonymous (or not a user)."""
    identity = request.identity
    if identity is None:
        return None
    email = getattr(identity, email_attribute, None)
    user_id = getattr(identity, id_attribute, None)
    if user_id is None or not isinstance(email, str):
        return None
    return user_id, email


def current_user(state: BounceState, request: Any) -> tuple[object, str] | None:
    """``(user id, current address)`` of the request's user, or None when anonymous.

    ``state.user_lookup`` when set; by default ``request.identity``, read with the
    user handler's ``id_attribute`` and ``email_attribute``.
    """
    if state.user_lookup is not None:
        return state.user_lookup(request)
    handler = state.user_handler
    assert handler is not None  # the notice is on only with a user handler
    return identity_user(
        request, id_attribute=handler.id_attribute, email_attribute=handler.email_attribute
    )


def flash_notice(state: BounceState, request: Any) -> bool:
    """Flash the pending notice of the request's user, once; True when flashed.

    Only on GET requests (the core's ``NOTICE_METHODS``, as in every adapter):
    a HEAD response has no body to show it in, and a POST may be the very
    form that changes the address.
    """
    if request.method not in NOTICE_METHODS or state.user_handler is None:
        return False
    user = current_user(state, request)
    if user is None:
        return False
    user_id, email = user
    # The user handler's unit of work commits through `transaction`: zope.sqlalchemy
    # sees the ORM UPDATE that marks the notice shown, so the commit keeps it.
    text = take_notice(state.user_handler.unit_of_work, user_id, email, state.notice_message)
    if text is None:
        return False
    request.session.flash(text, state.notice_category)
    return True


def notice_tween_factory(handler: Callable[[Any], Any], registry: Any) -> Callable[[Any], Any]:
    """The tween that flashes a user's pending bounce notice once, before the view runs."""
    state: BounceState | None = registry.get(REGISTRY_KEY)
    if state is None or not state.notice:
        return handler

    def bounce_notice_tween(request: Any) -> Any:
        flash_notice(state, request)
        return handler(request)

    return bounce_notice_tween
