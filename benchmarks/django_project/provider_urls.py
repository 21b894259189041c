"""URLs of the provider rows: the trivial view and django-anymail's nine tracking webhooks.

The views are anymail's own classes, as ``anymail.urls`` mounts them. The
SendGrid, Mailgun, Resend and Mandrill views get ``basic_auth=[]`` (anymail's
documented ``as_view`` override): they authenticate by signature alone, as
the middleware's routes for them do, although ``WEBHOOK_SECRET`` is set for
the views of the providers that only have Basic credentials.
"""

from __future__ import annotations

from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.brevo import BrevoTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.mailjet import MailjetTrackingWebhookView
from anymail.webhooks.mandrill import MandrillCombinedWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.resend import ResendTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from anymail.webhooks.sparkpost import SparkPostTrackingWebhookView
from django.urls import path

from . import views

#: Provider name (as the middleware's providers spell it) -> anymail's path for it.
ANYMAIL_PATHS = {
    "postmark": "/anymail/postmark/tracking/",
    "sendgrid": "/anymail/sendgrid/tracking/",
    "mailgun": "/anymail/mailgun/tracking/",
    "amazon_ses": "/anymail/amazon_ses/tracking/",
    "mailjet": "/anymail/mailjet/tracking/",
    "sparkpost": "/anymail/sparkpost/tracking/",
    "brevo": "/anymail/brevo/tracking/",
    "resend": "/anymail/resend/tracking/",
    "mandrill": "/anymail/mandrill/tracking/",
}

urlpatterns = [
    path("hello/", views.hello),
    path(ANYMAIL_PATHS["postmark"][1:], PostmarkTrackingWebhookView.as_view()),
    path(ANYMAIL_PATHS["sendgrid"][1:], SendGridTrackingWebhookView.as_view(basic_auth=[])),
    path(ANYMAIL_PATHS["mailgun"][1:], MailgunTrackingWebhookView.as_view(basic_auth=[])),
    path(ANYMAIL_PATHS["amazon_ses"][1:], AmazonSESTrackingWebhookView.as_view()),
    path(ANYMAIL_PATHS["mailjet"][1:], MailjetTrackingWebhookView.as_view()),
    path(ANYMAIL_PATHS["sparkpost"][1:], SparkPostTrackingWebhookView.as_view()),
    path(ANYMAIL_PATHS["brevo"][1:], BrevoTrackingWebhookView.as_view()),
    path(ANYMAIL_PATHS["resend"][1:], ResendTrackingWebhookView.as_view(basic_auth=[])),
    path(ANYMAIL_PATHS["mandrill"][1:], MandrillCombinedWebhookView.as_view(basic_auth=[])),
]
