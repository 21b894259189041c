"""Fixtures shared by the core tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import postgres as _postgres
from .postgres import PostgresServer

PAYLOADS = Path(__file__).parent / "payloads"


def load_payload(name: str) -> dict[str, Any]:
    """A Postmark payload fixture from ``tests/payloads/<name>.json``."""
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text("utf-8"))
    return data


@pytest.fixture
def payload() -> Callable[[str], dict[str, Any]]:
    """Load a payload fixture by name."""
    return load_payload


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A real PostgreSQL server for the whole test session (see ``tests/postgres.py``)."""
    return _postgres.server()
