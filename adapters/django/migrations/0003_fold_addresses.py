"""Fill the folded-address columns of the events and notices stored by version 1."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from bounce_middleware.store import address_key

_BATCH = 500


def fold_addresses(apps: Any, schema_editor: Any) -> None:
    """``email_key = address_key(email)`` for every row, a batch at a time.

    :func:`~bounce_middleware.store.address_key` is what the store computes for a
    new row (and for ``records(email=...)``): NUL as U+FFFD, then folded.
    """
    db = schema_editor.connection.alias
    for name in ("BounceEvent", "BounceNotice"):
        model = apps.get_model("bounce_middleware", name)
        rows = model._base_manager.using(db).only("pk", "email").order_by("pk")
        last = None
        # Pages by primary key: no cursor stays open on the table being updated.
        while batch := list((rows if last is None else rows.filter(pk__gt=last))[:_BATCH]):
            for row in batch:
                row.email_key = address_key(row.email)
            model._base_manager.using(db).bulk_update(batch, ["email_key"])
            last = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [("bounce_middleware", "0002_unbounded_text")]

    # Backwards, 0002 drops the columns again: nothing to undo here.
    operations = [migrations.RunPython(fold_addresses, migrations.RunPython.noop, elidable=True)]
