"""The benchmark project served by gunicorn: Django, with the bounce endpoint in front.

One application serves every row over HTTP: ``/postmark/bounce`` (the
middleware with the Django adapter, row 7), ``/anymail/postmark/tracking/``
(row 6) and ``/classic/postmark/bounce`` (row 5).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.django_project.settings")

from bounce_middleware.adapters.django.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
