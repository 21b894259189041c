"""Admin pages: bounces and rejected requests (read-only, with the body), and notices.

A stored body is whatever the middleware accepted (up to ``MAX_BODY_SIZE``),
so the page that shows it must survive anything: bodies nested deeper than
:data:`PRETTY_DEPTH` (or not JSON, or not UTF-8) are shown as received, and a
lone UTF-16 surrogate escape (``\\ud800``) stays an escape.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .models import BounceEvent, BounceNotice, RejectedRequest

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
_REJECTED_FIELDS = ("key", "provider", "reason", "received_at", "resolved", "payload")

#: Bodies nested deeper are not pretty-printed: Python's JSON encoder recurses
#: once per level (an event nested ~960 deep raised RecursionError here).
PRETTY_DEPTH = 64
# A JSON string (with its escapes), or one bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_depth(text: str) -> int:
    """How deeply ``text``'s JSON arrays and objects nest, counted without recursion."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def show_body(body: bytes | memoryview) -> SafeString:
    """A stored body as HTML: pretty-printed JSON when shallow enough, else as received."""
    text = bytes(body).decode("utf-8", "replace")
    if nesting_depth(text) <= PRETTY_DEPTH:
        with contextlib.suppress(ValueError):  # not JSON: shown as received
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            # A \ud800 escape decodes to a lone surrogate, which no UTF-8 page can
            # hold: shown as the escape it came as.
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return format_html("<pre>{}</pre>", text)


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
        return show_body(obj.body)


@admin.register(RejectedRequest)
class RejectedRequestAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "provider", "reason", "resolved"]
    list_filter = ["resolved", "provider"]
    search_fields = ["key"]
    date_hierarchy = "received_at"
    fields = _REJECTED_FIELDS
    readonly_fields = _REJECTED_FIELDS

    @admin.display(description=_("body"))
    def payload(self, obj: RejectedRequest) -> SafeString:
        """The refused body, as received (pretty-printed when it is JSON)."""
        return show_body(obj.body)


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
