"""The Django project the benchmark rows 3 and 5-7 run in.

Made as ``django-admin startproject`` makes one (its ``INSTALLED_APPS`` and
``MIDDLEWARE``), plus the bounce adapter and django-anymail, one SQLite file
for every database row, and three views: a trivial one, the classic
hand-written Postmark view, and django-anymail's tracking webhook.
"""

from __future__ import annotations
