"""The signing keys both receivers of the Resend and Mandrill rows are given.

Published here on purpose: they sign benchmark requests only. The Django
settings (django-anymail), the middleware's routes and the request factories
all read them from this module, so that the two sides check the same thing.
"""

from __future__ import annotations

#: Svix's format: ``whsec_`` and the base64 of the 32-byte HMAC key.
RESEND_SECRET = "whsec_Ym91bmNlLW1pZGRsZXdhcmUgYmVuY2htYXJrIGtleSE="
#: Mandrill's webhook key, and the URL as configured in Mandrill (both sides sign it).
MANDRILL_KEY = "benchmark-mandrill-webhook-key"
MANDRILL_URL = "https://bench.example.com/hooks/mandrill"
