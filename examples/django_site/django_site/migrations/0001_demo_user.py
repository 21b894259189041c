"""Create the demo user ``demo`` (password ``demo``, address ``demo@example.com``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import migrations

DEMO = {"username": "demo", "email": "demo@example.com", "first_name": "Demo"}


def create_demo_user(apps: Any, schema_editor: Any) -> None:
    user_model = apps.get_model("auth", "User")
    user_model.objects.get_or_create(
        username=DEMO["username"], defaults={**DEMO, "password": make_password("demo")}
    )


def delete_demo_user(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "User").objects.filter(username=DEMO["username"]).delete()


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_demo_user, delete_demo_user)]
