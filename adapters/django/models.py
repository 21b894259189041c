"""The stored bounce events (the store) and the per-user notices (the user store)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from bounce_middleware.model import BounceKind

KIND_CHOICES = [(kind.value, kind.value.replace("_", " ")) for kind in BounceKind]


class BounceEvent(models.Model):
    """One accepted webhook event, by its de-duplication key, and how far it got.

    ``completed`` holds the names of the handlers that finished it, one per
    line. ``lease_token``/``lease_expires`` mark the delivery running its
    handlers now, so that a concurrent redelivery in another process waits.
    """

    key = models.CharField(_("event key"), max_length=255, unique=True)
    provider = models.CharField(_("provider"), max_length=32)
    email = models.CharField(_("address"), max_length=254)
    kind = models.CharField(_("kind"), max_length=16, choices=KIND_CHOICES)
    type = models.CharField(_("type"), max_length=64)
    description = models.TextField(_("description"), blank=True)
    body = models.BinaryField(_("payload"))
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    completed = models.TextField(_("completed handlers"), blank=True, default="")
    finished = models.BooleanField(_("finished"), default=False)
    attempts = models.PositiveIntegerField(_("deliveries run"), default=1)
    lease_token = models.CharField(max_length=32, blank=True, default="")
    lease_expires = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("bounce")
        verbose_name_plural = _("bounces")
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.email}"

    @property
    def completed_handlers(self) -> frozenset[str]:
        """The names in ``completed`` as a set."""
        return frozenset(self.completed.splitlines())


class BounceNotice(models.Model):
    """A bounce a user should hear about once, while their address is the one that bounced."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="bounce_notices",
        verbose_name=_("user"),
    )
    email = models.CharField(_("address that bounced"), max_length=254)
    event_key = models.CharField(_("event key"), max_length=255)
    kind = models.CharField(_("kind"), max_length=16, choices=KIND_CHOICES)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    shown_at = models.DateTimeField(_("shown"), null=True, blank=True)

    class Meta:
        verbose_name = _("bounce notice")
        verbose_name_plural = _("bounce notices")
        ordering = ["-created_at", "-id"]
        constraints = [
            # Makes the handler idempotent: a redelivered event adds nothing.
            models.UniqueConstraint(
                fields=["event_key", "user"], name="bounce_middleware_notice_once_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.kind})"
