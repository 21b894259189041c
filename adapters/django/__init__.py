"""Django adapter: bounce records, a user-store handler and a one-time notice.

Add ``"bounce_middleware.adapters.django"`` to ``INSTALLED_APPS`` (app label
``bounce_middleware``), configure ``settings.BOUNCE_MIDDLEWARE``, and change one
line of ``wsgi.py``::

    from bounce_middleware.adapters.django.wsgi import get_wsgi_application

The parts live in submodules, importable once Django's apps are loaded:
``wsgi`` (:func:`~.wsgi.wrap`, :func:`~.wsgi.get_wsgi_application`), ``handlers``
(:func:`~.handlers.notify_users`), ``middleware`` (:class:`~.middleware.BounceNoticeMiddleware`),
``store`` (:class:`~.store.DjangoStore`), ``conf`` (the settings, documented there).
This module imports no model, so that Django can import it while loading apps.
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without Django
    from bounce_middleware.errors import ImproperlyInstalled

    raise ImproperlyInstalled("django", "Django") from None
