"""A custom user model whose e-mail address lives in another field."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models

from bounce_middleware.adapters.django.db import Folded


class Member(AbstractUser):
    """``EMAIL_FIELD`` is ``contact_email``; the inherited ``email`` column means nothing here."""

    contact_email = models.EmailField(blank=True)

    EMAIL_FIELD = "contact_email"

    class Meta(AbstractUser.Meta):
        # The README's recipe: the adapter's user lookup searches this index.
        indexes = [models.Index(Folded("contact_email"), name="member_email_folded")]


class Suppression(models.Model):
    """A transactional handler's own row (``tests/test_django_takeover.py``).

    No unique key: a second application of the handler shows as a second row.
    """

    email = models.TextField()
    event_key = models.TextField()
