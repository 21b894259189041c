"""URLs of the benchmark project; the bounce middleware's path is not among them."""

from __future__ import annotations

from django.urls import include, path

from . import views

urlpatterns = [
    path("hello/", views.hello),
    path("classic/postmark/bounce", views.classic_bounce),
    # django-anymail's own URLconf: the Postmark tracking hook is postmark/tracking/.
    path("anymail/", include("anymail.urls")),
]
