"""Settings of the example site. Not for production: DEBUG is on and the secrets are public."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "bounce_middleware.adapters.django",
    "django_site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After auth and messages: it needs request.user and adds a message.
    "bounce_middleware.adapters.django.middleware.BounceNoticeMiddleware",
]

# The bounce endpoints, one per provider: Postmark posts to
# http://postmark:s3cret@<host>/postmark/bounce.
BOUNCE_MIDDLEWARE = {
    "ROUTES": {
        "/postmark/bounce": "postmark",
        # "/sendgrid/events": "sendgrid",  # with "SENDGRID" below
    },
    "POSTMARK": {
        "CREDENTIALS": os.environ.get("BOUNCE_CREDENTIALS", "postmark:s3cret").split(),
    },
    # The "Verification Key" SendGrid shows once its Signed Event Webhook is on:
    # "SENDGRID": {"PUBLIC_KEY": os.environ["SENDGRID_VERIFICATION_KEY"]},
    "ACCOUNT_URL": "account",
}

ROOT_URLCONF = "django_site.urls"
# runserver serves this too, so the bounce endpoint works under `manage.py runserver`.
WSGI_APPLICATION = "django_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
        "NAME": os.environ.get("DJANGO_SITE_DB", BASE_DIR / "db.sqlite3"),
        # Writers queue for the lock instead of failing on upgrade from a read lock.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Event key, type, kind and the answer: never credentials or bodies.
    "loggers": {"bounce_middleware": {"handlers": ["console"], "level": "INFO"}},
}
