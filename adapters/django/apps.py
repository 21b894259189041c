"""The Django app configuration (label ``bounce_middleware``)."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BounceMiddlewareConfig(AppConfig):
    """Registers the models, the admin, the system checks and SQLite's ``bounce_fold``."""

    name = "bounce_middleware.adapters.django"
    label = "bounce_middleware"
    verbose_name = _("E-mail bounces")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.core.signals import setting_changed
        from django.db.backends.signals import connection_created

        from .checks import check_middleware, check_settings
        from .conf import clear_state
        from .db import register_fold, register_fold_on_open_connections

        checks.register(check_settings)
        checks.register(check_middleware)
        setting_changed.connect(clear_state, dispatch_uid="bounce_middleware.clear_state")
        connection_created.connect(register_fold, dispatch_uid="bounce_middleware.register_fold")
        register_fold_on_open_connections()
