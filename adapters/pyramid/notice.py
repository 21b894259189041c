"""The one-time flash of a user's bounce notice, and the transactions it and the user store use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import transaction
import zope.sqlalchemy
from sqlalchemy import orm

from bounce_middleware.adapters.sqlalchemy import DEFAULT_NOTICE, UnitOfWork, take_notice
from bounce_middleware.handlers import NOTICE_METHODS

__all__ = [
    "DEFAULT_NOTICE_CATEGORY",
    "FlashNotice",
    "SessionFactory",
    "UserLookup",
    "default_user_lookup",
    "identity_user",
    "notice_tween_factory",
    "transaction_scope",
]

#: The registry key holding the app's ``BounceState``.
REGISTRY_KEY = "bounce_middleware"
#: Pyramid's default flash queue, the one ``request.session.pop_flash()`` reads.
DEFAULT_NOTICE_CATEGORY = ""

SessionFactory = Callable[[], orm.Session]
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
    """The default user lookup: ``request.identity``'s id and address, or None if anonymous."""
    identity = request.identity
    if identity is None:
        return None
    email = getattr(identity, email_attribute, None)
    user_id = getattr(identity, id_attribute, None)
    if user_id is None or not isinstance(email, str):
        return None
    return user_id, email


def default_user_lookup(
    user_model: type[Any], email_attribute: str, id_attribute: str | None
) -> UserLookup:
    """``identity_user`` for ``user_model``: its id attribute defaults to the primary key."""
    if id_attribute is None:
        mapper = sa.inspect(user_model)
        id_attribute = mapper.get_property_by_column(mapper.primary_key[0]).key
    id_name: str = id_attribute

    def lookup(request: Any) -> tuple[object, str] | None:
        return identity_user(request, id_attribute=id_name, email_attribute=email_attribute)

    return lookup


@dataclass
class FlashNotice:
    """Shows a user's pending bounce notice once, through ``request.session.flash``."""

    unit_of_work: UnitOfWork
    user_lookup: UserLookup
    message: str = DEFAULT_NOTICE
    #: The flash queue.
    category: str = DEFAULT_NOTICE_CATEGORY

    def show(self, request: Any) -> bool:
        """Flash the pending notice for the request's user, if any; True when flashed.

        Only on GET requests (the core's ``NOTICE_METHODS``, as in every adapter):
        a HEAD response has no body to show it in, and a POST may be the very
        form that changes the address.
        """
        if request.method not in NOTICE_METHODS:
            return False
        user = self.user_lookup(request)
        if user is None:
            return False
        user_id, email = user
        # Committed through `transaction`: zope.sqlalchemy sees the ORM UPDATE that
        # marks it shown, so the commit keeps it.
        text = take_notice(self.unit_of_work, user_id, email, self.message)
        if text is None:
            return False
        request.session.flash(text, self.category)
        return True


def notice_tween_factory(handler: Callable[[Any], Any], registry: Any) -> Callable[[Any], Any]:
    """The tween that flashes a user's pending bounce notice once, before the view runs."""
    state = registry.get(REGISTRY_KEY)
    notice: FlashNotice | None = getattr(state, "notice", None)
    if notice is None:
        return handler
    show = notice.show

    def bounce_notice_tween(request: Any) -> Any:
        show(request)
        return handler(request)

    return bounce_notice_tween
