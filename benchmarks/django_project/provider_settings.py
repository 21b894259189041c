"""Settings of the provider rows (:mod:`benchmarks.providers`): the project's, other URLs.

The same ``startproject`` settings as every Django row, with the URLconf of
the provider rows and the keys django-anymail checks signatures with: the
published TEST public key of the SendGrid samples (requests are signed with
its private half), the Mailgun signing key, the Resend (Svix) signing secret,
and Mandrill's webhook key and the URL Mandrill signs, all shared with the
middleware's routes. ``WEBHOOK_SECRET`` (HTTP Basic) stays set for Postmark,
Amazon SES, Mailjet, SparkPost and Brevo; the SendGrid, Mailgun, Resend and
Mandrill views are told to skip it (:mod:`.provider_urls`), as a project that
relies on their signatures would.
"""

from __future__ import annotations

from benchmarks.provider_keys import MANDRILL_KEY, MANDRILL_URL, RESEND_SECRET
from bounce_middleware.samples.sendgrid import TEST_PUBLIC_KEY

from .data import MAILGUN_SIGNING_KEY
from .settings import *  # noqa: F403  (startproject's settings, shared by every Django row)
from .settings import ANYMAIL as _ANYMAIL

ROOT_URLCONF = "benchmarks.django_project.provider_urls"
ANYMAIL = {
    **_ANYMAIL,
    "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": TEST_PUBLIC_KEY,
    "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
    # Verified with the svix package (django-anymail's "resend" extra).
    "RESEND_SIGNING_SECRET": RESEND_SECRET,
    # Without the URL, anymail rebuilds it from the request (not what Mandrill signed).
    "MANDRILL_WEBHOOK_KEY": MANDRILL_KEY,
    "MANDRILL_WEBHOOK_URL": MANDRILL_URL,
}
