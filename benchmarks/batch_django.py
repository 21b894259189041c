"""DjangoStore on PostgreSQL for :mod:`benchmarks.batch`: Django configured for that one store.

A minimal project (``contenttypes``, ``auth`` and the adapter, one PostgreSQL
database, persistent connections) migrated into the database given, and the
middleware built as the adapter builds it: ``scope=connection_scope`` around
each delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


def django_postgres(url: str) -> tuple[Any, Callable[[int], int], Callable[[], int], Any]:
    """``(DjangoStore(), count_finished_above(mark), top_id(), scope)`` on the database at ``url``.

    ``url`` is the SQLAlchemy URL the SQLAlchemyStore rows use; Django is set
    up here (this process has no other Django project).
    """
    import django
    from django.conf import settings
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "bounce_middleware.adapters.django",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.database,
                "USER": parts.username or "",
                "PASSWORD": parts.password or "",
                "HOST": parts.host or "",
                "PORT": str(parts.port or ""),
                "CONN_MAX_AGE": None,
            }
        },
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    from django.core.management import call_command
    from django.db.models import Max

    from bounce_middleware.adapters.django.db import connection_scope
    from bounce_middleware.adapters.django.models import BounceEvent
    from bounce_middleware.adapters.django.store import DjangoStore

    call_command("migrate", verbosity=0, interactive=False)

    # The counts share the store's connection (one thread): closing it would make the
    # next timed request connect again.
    def finished_above(mark: int) -> int:
        return BounceEvent.objects.filter(id__gt=mark, finished=True).count()

    def top() -> int:
        return int(BounceEvent.objects.aggregate(top=Max("id"))["top"] or 0)

    scope: Callable[[], AbstractContextManager[object]] = connection_scope
    return DjangoStore(), finished_above, top, scope
