"""The Celery tasks of the hand-off, found by ``app.autodiscover_tasks()`` in a Django project.

With ``BOUNCE_MIDDLEWARE["CELERY_APP"]`` set, the webhook queues each event's
key for ``bounce_middleware.deliver``. A Celery worker of a Django project
imports this module through ``autodiscover_tasks()`` (the app is in
``INSTALLED_APPS``), which registers the tasks, and delivers with the
middleware ``BOUNCE_MIDDLEWARE`` configures: the same store, routes and
handlers as the web process, each delivery in the same connection handling.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celery import Celery

from bounce_middleware.celery_tasks import CeleryHandoff, add_receiver_loader, deliver, sweep_task
from bounce_middleware.middleware import BounceMiddleware

from .conf import get_state
from .db import connection_scope

if TYPE_CHECKING:
    from bounce_middleware.receiver import Receiver

__all__ = ["deliver", "django_receiver", "sweep_task"]


def _no_application(environ: Any, start_response: Any) -> Iterable[bytes]:
    # A worker serves no HTTP: the middleware is built for its receiver only.
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not served by a worker\n"]


def django_receiver(app: Celery) -> Receiver | None:
    """The receiver ``BOUNCE_MIDDLEWARE`` configures, as :func:`.wsgi.wrap` builds it, when
    its ``CELERY_APP`` is ``app``; None for a worker of another Celery app."""
    options = get_state().middleware
    handoff = options.get("handoff")
    if not (isinstance(handoff, CeleryHandoff) and handoff.app is app):
        return None
    return BounceMiddleware(_no_application, scope=connection_scope, **options).receiver


add_receiver_loader(django_receiver)
