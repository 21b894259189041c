"""Django settings for the tests: SQLite (PostgreSQL on request), the adapter, a custom user.

The user model is ``tests.django_app.models.Member``, whose ``EMAIL_FIELD`` is
``contact_email`` (it also has Django's ``email`` column, holding another
address), so every test proves the adapter looks users up by ``EMAIL_FIELD``.
The stock ``auth.User`` is covered by ``tests/test_django_example.py``, which
runs the example site (stock user model) in a subprocess.

Importing this module has no side effects: mypy's django-stubs plugin loads it.
"""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "bounce_middleware.adapters.django",
    "tests.django_app",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "bounce_middleware.adapters.django.middleware.BounceNoticeMiddleware",
]
ROOT_URLCONF = "tests.django_app.urls"
AUTH_USER_MODEL = "django_app.Member"
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
# A file, not Django's default in-memory test database: closing a connection
# must really close it, and threads must really get their own connections.
# "postgresql" is a real server (tests/postgres.py), used only by tests that ask for
# databases=["default", "postgresql"] (or "__all__"): pytest-django creates its test
# database only then, and the engine (Django's PostgreSQL backend with psycopg 3)
# starts the server at its first connection, so other runs never start or touch it.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {
            "NAME": os.path.join(
                tempfile.gettempdir(), f"bounce-middleware-test-{os.getpid()}.sqlite3"
            )
        },
    },
    "postgresql": {
        "ENGINE": "tests.django_app.postgresql",
        "NAME": "bounce_django",
        # One name per test process, in case several runs share one server
        # (BOUNCE_TEST_POSTGRES_URL).
        # DEPENDENCIES: Django's default makes every other alias depend on "default",
        # which the PostgreSQL tests alone (databases=["postgresql"]) cannot order:
        # "Circular dependency in TEST[DEPENDENCIES]".
        "TEST": {"NAME": f"test_bounce_django_{os.getpid()}", "DEPENDENCIES": []},
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Fast hashing: the tests log users in, they do not test password storage.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"

# Long and unpublished: the tests' settings must pass every check, W004 included.
WEBHOOK_PASSWORD = "tests-only-webhook-password"
BOUNCE_MIDDLEWARE = {
    "PATH": "/postmark/bounce",
    "CREDENTIALS": [f"postmark:{WEBHOOK_PASSWORD}"],
    "NOTIFY_KINDS": ["hard", "suppressed"],
    "ACCOUNT_URL": "account",
}
