"""The user-store handler: leave a notice for each user whose address bounced."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, router, transaction
from django.db.models import Value
from django.utils import timezone

from bounce_middleware.errors import ConfigurationError
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import address_key, storable, unavailable

from .conf import get_state
from .db import Folded, connection_scope
from .models import BounceNotice
from .prepared import fetch_column, statements
from .store import DjangoStore

if TYPE_CHECKING:
    from bounce_middleware.handlers import Delivery


class UserBounceHandler:
    """Leave one :class:`~.models.BounceNotice` per user whose address bounced.

    Users are found by the user model's ``EMAIL_FIELD``, compared folded
    (case-insensitive, Unicode-aware; see :class:`~.db.Folded`); an address
    nobody has is ignored. Only ``kinds`` count (by default the ``NOTIFY_KINDS``
    setting, read when called).

    Transactional: the middleware calls it as ``handler(bounce, delivery)``.
    The notices, and the handler's completion when the store is a
    :class:`~.store.DjangoStore` on the same database, commit in one
    transaction, so the notices are written exactly once (a delivery that lost
    its lease to another one rolls its notices back and fails). Idempotent with
    any other store (one notice per event and user). A database error is
    raised as :class:`~bounce_middleware.errors.StoreUnavailable`, naming the
    error's class only (never the row's values).

    ``name`` is the dotted name the handler is registered, and its completion
    recorded, under (``default_name`` reads it); it must stay the same across
    releases. Give each instance its own.
    """

    transactional = True

    def __init__(
        self,
        *,
        kinds: Iterable[BounceKind | str] | None = None,
        name: str | None = None,
    ) -> None:
        try:
            self.kinds = None if kinds is None else frozenset(BounceKind(k) for k in kinds)
        except ValueError as exc:
            raise ConfigurationError(f"UserBounceHandler kinds: {exc}") from None
        module, _, qualname = (name or f"{__name__}.UserBounceHandler").rpartition(".")
        self.__module__, self.__qualname__ = module, qualname

    def __repr__(self) -> str:
        return f"<UserBounceHandler {self.__module__}.{self.__qualname__}>"

    def __call__(self, bounce: Bounce, delivery: Delivery | None = None) -> bool:
        """Leave the notices; True when the completion was recorded with them."""
        kinds = self.kinds if self.kinds is not None else get_state().notify_kinds
        if bounce.kind not in kinds or not bounce.email:
            return False
        db = router.db_for_write(BounceNotice)
        store = None if delivery is None else delivery.store
        joins = isinstance(store, DjangoStore) and store.db == db
        try:
            with connection_scope(), transaction.atomic(using=db):
                ids = user_ids(db, bounce.email)
                if ids:
                    add_notices(db, bounce, ids)
                if joins:
                    assert delivery is not None and isinstance(store, DjangoStore)
                    store.complete(delivery.claim, delivery.name, finished=delivery.finishes)
        except DatabaseError as exc:
            # The middleware logs a failed handler's traceback: a driver's message may
            # quote the row (PostgreSQL's "DETAIL: Failing row contains (...)").
            raise unavailable("bounce user handler", exc) from None
        return joins


#: The name ``notify_users`` is registered (and its completion recorded) under.
NAME = "bounce_middleware.adapters.django.handlers.notify_users"

#: The default handler (``HANDLERS`` unset): notify for the ``NOTIFY_KINDS`` setting.
notify_users = UserBounceHandler(name=NAME)


def user_ids(db: str, email: str, *, prepared: bool = True) -> list[Any]:
    """Primary keys of the users whose ``EMAIL_FIELD`` is ``email``, compared folded.

    ``_base_manager``: every user with the address, whatever the default manager filters.
    ``prepared=False`` builds the query with the ORM even where a prepared one exists.
    """
    sql = statements(db) if prepared else None
    if sql is not None and sql.users is not None:
        return fetch_column(db, sql.users, [storable(email)])
    user_model = get_user_model()
    field = user_model.get_email_field_name()
    users = user_model._base_manager.using(db).alias(bounce_folded=Folded(field))
    # storable(): a NUL in the parameter is an error on PostgreSQL (no address holds one).
    found = users.filter(bounce_folded=Folded(Value(storable(email))))
    return list(found.values_list("pk", flat=True))


def add_notices(db: str, bounce: Bounce, user_ids: list[Any], *, prepared: bool = True) -> None:
    """One notice of ``bounce`` per user, skipping users who have it already."""
    email = storable(bounce.email)
    common = {
        "email": email,
        "email_key": address_key(email),
        "event_key": storable(bounce.key),
        "kind": bounce.kind.value,
        "description": storable(bounce.description),
        "created_at": timezone.now(),
    }
    rows = [{"user_id": user_id, **common} for user_id in user_ids]
    sql = statements(db) if prepared else None
    if sql is not None:
        sql.notices.run(db, rows)
    else:
        notices = [BounceNotice(**row) for row in rows]
        BounceNotice.objects.using(db).bulk_create(notices, ignore_conflicts=True)
