"""Fixtures shared by the core tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import postgres as _postgres
from . import store_cases
from .postgres import PostgresServer
from .store_cases import StoreCase

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


@pytest.fixture(scope="session")
def sqlalchemy_postgresql_url(postgres: PostgresServer) -> str:
    """The database of the ``sqlalchemy-postgresql`` store case, created once per session."""
    return postgres.url(postgres.create_database("sqlalchemy"), driver="postgresql+psycopg")


@pytest.fixture(params=store_cases.PARAMS)
def store_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreCase]:
    """Each shipped store in turn, on a fresh real database (see ``tests/store_cases.py``)."""
    case = store_cases.build(request.param, tmp_path, request)
    yield case
    case.close()
