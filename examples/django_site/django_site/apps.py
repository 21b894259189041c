"""The example site is also an app: its templates and its demo-user migration."""

from __future__ import annotations

from django.apps import AppConfig


class DjangoSiteConfig(AppConfig):
    name = "django_site"
    default_auto_field = "django.db.models.BigAutoField"
