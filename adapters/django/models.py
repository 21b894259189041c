"""The stored bounce events and rejected requests (the store), and per-user notices.

Every text column that holds request data is unbounded (``TextField``):
anything the parser accepts must be storable on every database, so no
``max_length`` may turn an accepted event into a ``DataError`` and a permanent
503. Addresses are also kept folded (:func:`~bounce_middleware.model.fold_address`,
computed in Python) in ``email_key``, which is what every address filter
compares; no unbounded address column is indexed (a PostgreSQL btree entry
is limited to about 2.7 KB).
"""

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

    # Unique, hence indexed: Bounce.key is bounded by the core (long ids are digested).
    key = models.TextField(_("event key"), unique=True)
    provider = models.TextField(_("provider"))
    email = models.TextField(_("address"), blank=True)
    email_key = models.TextField(_("folded address"), blank=True, default="", editable=False)
    kind = models.CharField(_("kind"), max_length=16, choices=KIND_CHOICES)
    type = models.TextField(_("type"), blank=True)
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
        return f"{self.type} {self.email}"[:200]

    @property
    def completed_handlers(self) -> frozenset[str]:
        """The names in ``completed`` as a set."""
        return frozenset(self.completed.splitlines())


class RejectedRequest(models.Model):
    """An authenticated request whose body the parser refused (400), kept to be replayed.

    ``resolved`` is set once a replay (after an upgrade) accepted it.
    """

    # sha256 of provider and body (bounce_middleware.store.rejection_key): bounded.
    key = models.TextField(_("key"), unique=True)
    provider = models.TextField(_("provider"))
    body = models.BinaryField(_("body"))
    reason = models.TextField(_("why it was refused"))
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    resolved = models.BooleanField(_("replayed"), default=False)

    class Meta:
        verbose_name = _("rejected request")
        verbose_name_plural = _("rejected requests")
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.provider}: {self.reason}"[:200]


class BounceNotice(models.Model):
    """A bounce a user should hear about once, while their address is the one that bounced."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="bounce_notices",
        verbose_name=_("user"),
    )
    email = models.TextField(_("address that bounced"))
    #: ``email`` folded: the notice shows while the user's folded address equals it.
    email_key = models.TextField(_("folded address"), blank=True, default="", editable=False)
    event_key = models.TextField(_("event key"))
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
        return f"{self.email} ({self.kind})"[:200]
