"""Put the bounce endpoint in front of Django's WSGI application: the ``wsgi.py`` line.

Either wrap what Django builds::

    application = wrap(get_wsgi_application())

or import this module's :func:`get_wsgi_application` in place of Django's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application as django_wsgi_application

from bounce_middleware.middleware import BounceMiddleware

from .conf import get_state
from .db import connection_scope

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

APP_NAME = "bounce_middleware.adapters.django"


def wrap(application: WSGIApplication) -> BounceMiddleware:
    """Wrap Django's WSGI application with the middleware configured by ``BOUNCE_MIDDLEWARE``.

    Call it after Django is set up (``get_wsgi_application()`` does that).
    Raises ``ImproperlyConfigured`` when the settings are wrong.
    """
    if not apps.is_installed(APP_NAME):
        raise ImproperlyConfigured(f"add {APP_NAME!r} to INSTALLED_APPS to use {__name__}")
    # Django's request_started/request_finished never fire for a request Django does
    # not serve: each delivery does their connection housekeeping in connection_scope.
    return BounceMiddleware(application, scope=connection_scope, **get_state().middleware)


def get_wsgi_application() -> BounceMiddleware:
    """Django's ``get_wsgi_application()``, wrapped by :func:`wrap`."""
    return wrap(django_wsgi_application())
