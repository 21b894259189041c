"""Settings of the benchmark project: ``startproject``'s defaults plus what the rows need.

The database file comes from ``BOUNCE_BENCH_DB`` (set by the benchmark scripts
before Django starts). Rows 5, 6 and 7 share it and these settings: Django's
SQLite backend with WAL (set once on the file) and ``synchronous=NORMAL``,
``BEGIN IMMEDIATE`` transactions (two gunicorn workers queue for the write
lock instead of failing), and persistent connections (``CONN_MAX_AGE =
None``). ``BOUNCE_BENCH_CONN_MAX_AGE=0`` gives Django's default of one
connection per request instead: with WAL, closing the last connection to the
file checkpoints it (an ``fsync``), which then costs every row milliseconds.
"""

from __future__ import annotations

import os
import tempfile

from .data import WEBHOOK_PASSWORD, WEBHOOK_USER

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "anymail",
    "bounce_middleware.adapters.django",
]

#: Exactly the list ``django-admin startproject`` writes (Django 5.2).
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
MIDDLEWARE = list(STARTPROJECT_MIDDLEWARE)

ROOT_URLCONF = "benchmarks.django_project.urls"
WSGI_APPLICATION = "benchmarks.django_project.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "BOUNCE_BENCH_DB", os.path.join(tempfile.gettempdir(), "bounce-bench.sqlite3")
        ),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA synchronous=NORMAL",
        },
        "CONN_MAX_AGE": (
            int(os.environ["BOUNCE_BENCH_CONN_MAX_AGE"])
            if os.environ.get("BOUNCE_BENCH_CONN_MAX_AGE")
            else None
        ),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

# Row 6: django-anymail checks the same Basic credential.
ANYMAIL = {"WEBHOOK_SECRET": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"}

# Row 7: the adapter with its defaults (DjangoStore, notify_users); hard bounces notify.
BOUNCE_MIDDLEWARE = {
    "PATH": "/postmark/bounce",
    "CREDENTIALS": [f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"],
    "NOTIFY_KINDS": ["hard"],
}
