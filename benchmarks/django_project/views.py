"""The views the Django rows time: trivial, classic hand-written, and django-anymail's receiver.

Rows 5, 6 and 7 do the same database work for a HardBounce: find the user by
address (``email__iexact``, as the adapter does) and record a
:class:`~bounce_middleware.adapters.django.models.BounceNotice` for them, in
one transaction.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bounce_middleware.adapters.django.models import BounceNotice

from .data import WEBHOOK_PASSWORD, WEBHOOK_USER

_EXPECTED = f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()


def hello(request: HttpRequest) -> HttpResponse:
    """Row 3: the trivial view."""
    return HttpResponse(b"Hello, world.\n", content_type="text/plain")


def record_hard_bounce(email: str, event_id: str, description: str) -> bool:
    """Find the user by address and leave them a notice; the work rows 5 and 6 share."""
    with transaction.atomic():
        user = get_user_model()._default_manager.filter(email__iexact=email).first()
        if user is None:
            return False
        BounceNotice.objects.create(
            user=user,
            email=email,
            event_key=f"postmark:{event_id}",
            kind="hard",
            description=description,
        )
    return True


@csrf_exempt
@require_POST
def classic_bounce(request: HttpRequest) -> HttpResponse:
    """Row 5: the Postmark bounce hook as a modern hand-written Django view."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    try:
        supplied = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        supplied = b""
    if scheme.lower() != "basic" or not hmac.compare_digest(supplied, _EXPECTED):
        response = HttpResponse("authentication required", status=401)
        response["WWW-Authenticate"] = 'Basic realm="postmark"'
        return response
    try:
        payload = json.loads(request.body)
    except ValueError:
        return HttpResponse("not JSON", status=400)
    if not isinstance(payload, dict):
        return HttpResponse("not a JSON object", status=400)
    if payload.get("Type") == "HardBounce":
        record_hard_bounce(
            str(payload.get("Email", "")), str(payload.get("ID")), str(payload.get("Description"))
        )
    return HttpResponse("ok")


def on_anymail_tracking(sender: object, event: Any, esp_name: str, **kwargs: Any) -> None:
    """Row 6: django-anymail's ``tracking`` signal receiver, doing row 5's work.

    Connected by the comparison's URLconf (:mod:`.urls`) only: the provider rows
    (:mod:`.provider_urls`) post the same Postmark body to anymail with a no-op
    receiver, and must not do this database work.
    """
    if event.esp_event.get("Type") == "HardBounce":
        record_hard_bounce(event.recipient or "", event.event_id, event.description or "")
