"""The Django app configuration (label ``bounce_middleware``)."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BounceMiddlewareConfig(AppConfig):
    """Registers the models, the admin and the system checks."""

    name = "bounce_middleware.adapters.django"
    label = "bounce_middleware"
    verbose_name = _("E-mail bounces")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.core.signals import setting_changed

        from .checks import check_middleware, check_settings
        from .conf import clear_config

        checks.register(check_settings)
        checks.register(check_middleware)
        setting_changed.connect(clear_config, dispatch_uid="bounce_middleware.clear_config")
