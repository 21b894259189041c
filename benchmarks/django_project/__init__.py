"""The Django project the benchmark rows 3 and 5-7 run in, and the provider rows.

Made as ``django-admin startproject`` makes one (its ``INSTALLED_APPS`` and
``MIDDLEWARE``), plus the bounce adapter and django-anymail, one SQLite file
for every database row, and three views: a trivial one, the classic
hand-written Postmark view, and django-anymail's tracking webhook. The
provider rows (:mod:`benchmarks.providers`) use the same settings with their
own URLconf: the trivial view and anymail's four tracking webhooks.
"""

from __future__ import annotations
