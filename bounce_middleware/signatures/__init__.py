"""Webhook signature checks, one small function per scheme, over the bytes as received.

Each ``verify_*`` call returns quietly or raises :class:`SignatureError` (the
svix ``Webhook.verify`` model): a provider maps it to 401 and logs its
``reason``. Keys and secrets are loaded once, when the provider is built
(``load_*``: :class:`~bounce_middleware.ConfigurationError` when none or a bad
one is configured, so a check fails closed), and several are accepted while
rotating. SendGrid and SNS need the ``crypto`` extra; nothing here imports
``cryptography`` until a function that needs it is called.

======================  ========================================================
SendGrid                :func:`verify_sendgrid` (ECDSA P-256, 24 h window)
Mailgun                 :func:`verify_mailgun` (HMAC-SHA256, 9 h window) and
                        :class:`SeenTokens` (replayed tokens)
Resend (Svix)           :func:`verify_svix` (HMAC-SHA256, 5 min window)
Mandrill                :func:`verify_mandrill` (HMAC-SHA1 over URL + form)
Amazon SES (SNS)        :func:`verify_sns` with a :class:`CertificateCache`
                        (RSA v1/v2; certificate fetched from AWS only)
======================  ========================================================
"""

from __future__ import annotations

from .common import MAX_FUTURE, SignatureError, check_timestamp, load_secrets
from .fetch import Fetch, FetchError, fetch_https
from .mailgun import sign_mailgun, verify_mailgun
from .mandrill import sign_mandrill, verify_mandrill
from .replay import SeenTokens
from .sendgrid import load_sendgrid_keys, sign_sendgrid, verify_sendgrid
from .sns import (
    CertificateCache,
    check_signing_cert_url,
    check_subscribe_url,
    sign_sns,
    sns_string_to_sign,
    verify_sns,
)
from .svix import load_svix_secrets, sign_svix, verify_svix

__all__ = [
    "MAX_FUTURE",
    "CertificateCache",
    "Fetch",
    "FetchError",
    "SeenTokens",
    "SignatureError",
    "check_signing_cert_url",
    "check_subscribe_url",
    "check_timestamp",
    "fetch_https",
    "load_secrets",
    "load_sendgrid_keys",
    "load_svix_secrets",
    "sign_mailgun",
    "sign_mandrill",
    "sign_sendgrid",
    "sign_sns",
    "sign_svix",
    "sns_string_to_sign",
    "verify_mailgun",
    "verify_mandrill",
    "verify_sendgrid",
    "verify_sns",
    "verify_svix",
]
