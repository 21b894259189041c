"""A custom user model whose e-mail address lives in another field."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class Member(AbstractUser):
    """``EMAIL_FIELD`` is ``contact_email``; the inherited ``email`` column means nothing here."""

    contact_email = models.EmailField(blank=True)

    EMAIL_FIELD = "contact_email"
