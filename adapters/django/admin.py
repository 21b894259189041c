"""Admin pages: bounces (read-only, with the payload) and the notices left for users."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .models import BounceEvent, BounceNotice

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:  # ModelAdmin is generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin


_EVENT_FIELDS = (
    "key",
    "provider",
    "email",
    "kind",
    "type",
    "description",
    "received_at",
    "finished",
    "attempts",
    "completed",
    "payload",
)


class ReadOnlyAdmin(_ModelAdmin):
    """Records made by webhooks: viewed and deleted, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BounceEvent)
class BounceEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "email", "kind", "type", "provider", "finished", "attempts"]
    list_filter = ["kind", "finished", "provider"]
    search_fields = ["email", "key"]
    date_hierarchy = "received_at"
    fields = _EVENT_FIELDS
    readonly_fields = _EVENT_FIELDS

    @admin.display(description=_("payload"))
    def payload(self, obj: BounceEvent) -> SafeString:
        """The raw webhook body, pretty-printed when it is JSON."""
        text = bytes(obj.body).decode("utf-8", "replace")
        with contextlib.suppress(ValueError):  # not JSON: shown as received
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        return format_html("<pre>{}</pre>", text)


@admin.register(BounceNotice)
class BounceNoticeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "email", "user", "kind", "shown_at"]
    list_filter = ["kind", ("shown_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "event_key"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    readonly_fields = [
        "user",
        "email",
        "event_key",
        "kind",
        "description",
        "created_at",
        "shown_at",
    ]
