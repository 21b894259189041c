"""Put the bounce endpoint in front of Django's ASGI application: the ``asgi.py`` line.

Either wrap what Django builds::

    application = wrap(get_asgi_application())

or import this module's :func:`get_asgi_application` in place of Django's.
The settings, store and handlers are the WSGI wrapper's (``BOUNCE_MIDDLEWARE``);
each delivery runs in a worker thread, where Django's synchronous ORM may
be used, inside the same connection housekeeping as under WSGI.
"""

from __future__ import annotations

from django.apps import apps
from django.core.asgi import get_asgi_application as django_asgi_application
from django.core.exceptions import ImproperlyConfigured

from bounce_middleware.asgi import ASGIApp, BounceMiddleware

from .conf import get_state
from .db import connection_scope
from .wsgi import APP_NAME


def wrap(application: ASGIApp) -> BounceMiddleware:
    """Wrap Django's ASGI application with the middleware configured by ``BOUNCE_MIDDLEWARE``.

    Call it after Django is set up (``get_asgi_application()`` does that).
    Raises ``ImproperlyConfigured`` when the settings are wrong.
    """
    if not apps.is_installed(APP_NAME):
        raise ImproperlyConfigured(f"add {APP_NAME!r} to INSTALLED_APPS to use {__name__}")
    # Django's request_started/request_finished never fire for a request Django does
    # not serve: each delivery does their connection housekeeping in connection_scope,
    # in the worker thread that uses the connection.
    return BounceMiddleware(application, scope=connection_scope, **get_state().middleware)


def get_asgi_application() -> BounceMiddleware:
    """Django's ``get_asgi_application()``, wrapped by :func:`wrap`."""
    return wrap(django_asgi_application())  # type: ignore[arg-type]
