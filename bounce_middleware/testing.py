"""Helpers for testing an application that uses bounce-middleware.

Realistic Postmark payloads (every record shape, with overrides) and the
``Authorization`` header to post them with::

    from webtest import TestApp
    from bounce_middleware.testing import auth_headers, postmark_bounce

    def test_bounce_flags_user():
        app = TestApp(make_wsgi_app())
        app.post_json("/postmark/bounce", postmark_bounce(email="ann@example.com"),
                      headers=auth_headers("postmark", "s3cret"))

The payload factories live in :mod:`bounce_middleware.samples` (the command
line uses them too); they are re-exported here, where users' tests import them.
"""

from __future__ import annotations

from .samples import (
    POSTMARK_TYPES,
    basic_auth_header,
    postmark_bounce,
    postmark_click,
    postmark_delivery,
    postmark_inbound,
    postmark_legacy_bounce,
    postmark_open,
    postmark_payload,
    postmark_spam_complaint,
    postmark_subscription_change,
)

__all__ = [
    "auth_headers",
    "basic_auth_header",
    "postmark_bounce",
    "postmark_click",
    "postmark_delivery",
    "postmark_inbound",
    "postmark_legacy_bounce",
    "postmark_open",
    "postmark_payload",
    "postmark_spam_complaint",
    "postmark_subscription_change",
    "POSTMARK_TYPES",
]


def auth_headers(user: str, password: str) -> dict[str, str]:
    """``{"Authorization": ...}`` ready for WebTest's ``headers=`` argument."""
    return {"Authorization": basic_auth_header(user, password)}
