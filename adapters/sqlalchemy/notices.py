"""What a framework's "show the notice once" hook needs: :func:`take_notice`, and the
two queries it is made of."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from bounce_middleware.model import fold_address
from bounce_middleware.store import storable, unavailable

from .sessions import UnitOfWork, rowcount
from .tables import DEFAULT_NOTICE, Notice, now

__all__ = ["mark_shown", "pending_notice", "take_notice"]

logger = logging.getLogger("bounce_middleware")


def pending_notice(session: orm.Session, user_id: object, current_email: str) -> Notice | None:
    """The newest notice not shown yet for the user's *current* address, or None.

    Addresses are compared folded (:func:`~bounce_middleware.model.fold_address`):
    case-insensitively, Unicode-aware, on every database. A notice about an
    address the user no longer has is never returned: a user who fixed their
    address sees nothing.
    """
    if not current_email:
        return None
    return session.scalars(
        sa.select(Notice)
        .where(
            Notice.user_id == storable(str(user_id)),
            Notice.shown_at.is_(None),
            Notice.email_key == fold_address(storable(current_email)),
        )
        .order_by(Notice.id.desc())
        .limit(1)
    ).first()


def mark_shown(session: orm.Session, notice: Notice) -> bool:
    """Mark ``notice`` and every other pending notice for the same user and address
    shown; the caller commits.

    Returns False when a concurrent request marked it first, so "show only if
    this returns True" gives exactly once even across processes.
    """
    result = session.execute(
        sa.update(Notice)
        .where(
            Notice.user_id == notice.user_id,
            Notice.shown_at.is_(None),
            Notice.email_key == notice.email_key,
        )
        .values(shown_at=now())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


def take_notice(
    unit_of_work: UnitOfWork, user_id: object, current_email: str, template: str = DEFAULT_NOTICE
) -> str | None:
    """The text of the user's pending notice, marked shown and committed; None if none.

    What a framework's "show the notice once" hook does: the text is returned
    only once the unit of work committed, so a failed commit shows nothing and
    a shown notice is never shown twice. A database error is logged (one line,
    without the statement's parameters) and shows nothing: the notice stays
    pending, and the page is not broken for it.
    """
    try:
        with unit_of_work() as session:
            notice = pending_notice(session, user_id, current_email)
            if notice is None or not mark_shown(session, notice):
                return None
            text = notice.render(template)
    except sa_exc.SQLAlchemyError as exc:
        logger.error("%s; not shown", unavailable("bounce notice", exc))
        return None
    return text
