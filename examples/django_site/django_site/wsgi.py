"""WSGI entry point: Django's application with the bounce endpoint in front of it."""

from __future__ import annotations

import os

from bounce_middleware.adapters.django.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

application = get_wsgi_application()
