"""``BounceNoticeMiddleware``: tell a logged-in user, once, that mail to them bounced.

Put it in ``MIDDLEWARE`` after ``AuthenticationMiddleware`` and
``MessageMiddleware``. On each ``GET`` (the core's ``NOTICE_METHODS``, as in
every framework) by a logged-in user it runs one indexed query for notices
about the user's *current* address (compared folded) not yet shown; a user
with none pays that query only. A user who has changed their address since
the bounce sees nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponseBase
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bounce_middleware.handlers import NOTICE_METHODS
from bounce_middleware.store import address_key

from .conf import DEFAULT_NOTICE_MESSAGE, DEFAULT_NOTICE_MESSAGE_NO_LINK, get_state
from .models import BounceNotice


class BounceNoticeMiddleware:
    """Adds a message (``NOTICE_CATEGORY``) for an unseen bounce of the user's current address.

    GET only: a HEAD response has no body, so the notice would be lost; a POST
    may be the very request that changes the address.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.email_field = get_user_model().get_email_field_name()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        # Without a session cookie nobody is logged in (messages need a session-backed
        # login): skip resolving request.user, which costs anonymous requests ~13 us.
        if request.method in NOTICE_METHODS and settings.SESSION_COOKIE_NAME in request.COOKIES:
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                address = getattr(user, self.email_field, "")
                if address:
                    self.notify(request, user.pk, address)
        return self.get_response(request)

    def notify(self, request: HttpRequest, user_id: Any, address: str) -> None:
        """Show the newest unseen notice for ``address`` and mark all of them shown."""
        pending = list(
            BounceNotice.objects.filter(
                user_id=user_id, shown_at__isnull=True, email_key=address_key(address)
            ).values_list("pk", "email", "description")
        )
        if not pending:
            return
        # Conditional, so that of two concurrent requests only one shows it.
        shown = BounceNotice.objects.filter(
            pk__in=[pk for pk, _, _ in pending], shown_at__isnull=True
        ).update(shown_at=timezone.now())
        if shown:
            _, email, description = pending[0]
            level = get_state().notice_level
            messages.add_message(request, level, notice_text(email, description))


def account_url() -> str | None:
    """``ACCOUNT_URL`` as a path: a path as given, a URL name reversed."""
    target = get_state().account_url
    if not target or "/" in target:
        return target
    try:
        return reverse(target)
    except NoReverseMatch:
        return None


def notice_text(email: str, description: str) -> SafeString:
    """The notice as HTML: ``NOTICE_MESSAGE`` with the values escaped."""
    url = account_url()
    message = get_state().notice_message
    if message is None:
        message = DEFAULT_NOTICE_MESSAGE if url else DEFAULT_NOTICE_MESSAGE_NO_LINK
    return format_html(str(message), email=email, description=description, account_url=url or "")
