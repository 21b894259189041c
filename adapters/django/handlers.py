"""The user-store handler: leave a notice for each user whose address bounced."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import router, transaction
from django.utils import timezone

from bounce_middleware.handlers import default_name
from bounce_middleware.model import Bounce

from .conf import get_config
from .db import connection_scope
from .models import BounceNotice
from .sql import notice_sql, user_lookup
from .store import record_completion


def notify_users(bounce: Bounce) -> None:
    """Leave one :class:`~.models.BounceNotice` per user whose address bounced.

    Users are found by the user model's ``EMAIL_FIELD``, case-insensitively;
    an address nobody has is ignored. Only kinds in ``NOTIFY_KINDS`` count.
    Idempotent (one notice per event and user), and exactly-once with
    :class:`~.store.DjangoStore`: its completion commits with the notices.
    """
    if bounce.kind not in get_config().notify_kinds or not bounce.email:
        return
    db = router.db_for_write(BounceNotice)
    with connection_scope(), transaction.atomic(using=db):
        ids = user_ids(db, bounce.email)
        if ids:
            add_notices(db, bounce, ids)
        record_completion(bounce, NAME, db)


def user_ids(db: str, email: str, *, prepared: bool = True) -> list[Any]:
    """Primary keys of the users whose ``EMAIL_FIELD`` is ``email``, ignoring case."""
    user_model = get_user_model()
    lookup = user_lookup(db, user_model._meta.label) if prepared else None
    if lookup is not None:
        return lookup.user_ids(db, email)
    field = user_model.get_email_field_name()
    users = user_model._base_manager.using(db).filter(**{f"{field}__iexact": email})
    return list(users.values_list("pk", flat=True))


def add_notices(db: str, bounce: Bounce, user_ids: list[Any], *, prepared: bool = True) -> None:
    """One notice of ``bounce`` per user, skipping users who have it already."""
    now = timezone.now()
    rows = [
        {
            "user_id": user_id,
            "email": bounce.email,
            "event_key": bounce.key,
            "kind": bounce.kind.value,
            "description": bounce.description,
            "created_at": now,
            "shown_at": None,
        }
        for user_id in user_ids
    ]
    sql = notice_sql(db) if prepared else None
    if sql is not None:
        sql.insert(db, rows)
    else:
        notices = [BounceNotice(**row) for row in rows]
        BounceNotice.objects.using(db).bulk_create(notices, ignore_conflicts=True)


#: The name ``notify_users`` is registered (and its completion recorded) under.
NAME = default_name(notify_users)
