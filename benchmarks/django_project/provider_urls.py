"""URLs of the provider rows: the trivial view and django-anymail's four tracking webhooks.

The views are anymail's own classes, as ``anymail.urls`` mounts them. The
SendGrid and Mailgun views get ``basic_auth=[]`` (anymail's documented
``as_view`` override): they authenticate by signature alone, as the
middleware's routes for them do, although ``WEBHOOK_SECRET`` is set for the
Postmark and Amazon SES views.
"""

from __future__ import annotations

from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.urls import path

from . import views

#: Provider name (as the middleware's providers spell it) -> anymail's path for it.
ANYMAIL_PATHS = {
    "postmark": "/anymail/postmark/tracking/",
    "sendgrid": "/anymail/sendgrid/tracking/",
    "mailgun": "/anymail/mailgun/tracking/",
    "amazon_ses": "/anymail/amazon_ses/tracking/",
}

urlpatterns = [
    path("hello/", views.hello),
    path(ANYMAIL_PATHS["postmark"][1:], PostmarkTrackingWebhookView.as_view()),
    path(ANYMAIL_PATHS["sendgrid"][1:], SendGridTrackingWebhookView.as_view(basic_auth=[])),
    path(ANYMAIL_PATHS["mailgun"][1:], MailgunTrackingWebhookView.as_view(basic_auth=[])),
    path(ANYMAIL_PATHS["amazon_ses"][1:], AmazonSESTrackingWebhookView.as_view()),
]
