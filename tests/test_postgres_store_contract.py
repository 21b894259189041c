"""The whole store contract suite, run against PostgresStore on a real PostgreSQL server.

The suite's modules parametrise their tests over ``store_case`` (``tests/conftest.py``);
this module collects every one of their tests again, with its own ``store_case``
that is PostgresStore on the session's server (``tests/postgres_store_case.py``).
A test the suite pins to its database stores (``params(DATABASE_NAMES)``) runs
here too: PostgresStore keeps its records in a database. Nothing is left out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from tests import (
    test_store,
    test_store_batch,
    test_store_batch_failures,
    test_store_middleware,
    test_store_prune,
    test_store_values,
)
from tests.postgres import PostgresServer
from tests.postgres_store_case import build
from tests.store_cases import StoreCase

SUITE = (
    test_store,
    test_store_values,
    test_store_batch,
    test_store_batch_failures,
    test_store_middleware,
    test_store_prune,
)


@pytest.fixture
def store_case(postgres: PostgresServer) -> Iterator[StoreCase]:
    """PostgresStore on an emptied database of the session's server."""
    case = build(postgres)
    yield case
    case.close()


def _pins_store_case(mark: pytest.Mark) -> bool:
    return mark.name == "parametrize" and mark.args[0] == "store_case"


def _adopted(test: Callable[..., Any]) -> Callable[..., Any]:
    """``test`` under this module, without the suite's own choice of stores."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return test(*args, **kwargs)

    run.pytestmark = [  # type: ignore[attr-defined]
        mark for mark in getattr(test, "pytestmark", []) if not _pins_store_case(mark)
    ]
    return run


def _suite_tests(modules: tuple[ModuleType, ...]) -> dict[str, Callable[..., Any]]:
    tests: dict[str, Callable[..., Any]] = {}
    for module in modules:
        for name, value in vars(module).items():
            if name.startswith("test_") and getattr(value, "__module__", "") == module.__name__:
                assert name not in tests, f"two suite tests are named {name}"
                tests[name] = _adopted(value)
    return tests


ADOPTED = _suite_tests(SUITE)
globals().update(ADOPTED)
