"""URLs of the benchmark project; the bounce middleware's path is not among them."""

from __future__ import annotations

from anymail.signals import tracking
from django.urls import include, path

from . import views

urlpatterns = [
    path("hello/", views.hello),
    path("classic/postmark/bounce", views.classic_bounce),
    # django-anymail's own URLconf: the Postmark tracking hook is postmark/tracking/.
    path("anymail/", include("anymail.urls")),
]

# Row 6's receiver does row 5's database work; connected with this URLconf only.
tracking.connect(views.on_anymail_tracking, dispatch_uid="benchmarks.row6")
