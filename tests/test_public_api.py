"""The package's public surface (issue 11): deliberate exports, sqlite3 imported lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bounce_middleware
from bounce_middleware.answer import Answer
from bounce_middleware.handlers import DEFAULT_NOTIFY_KINDS, NOTICE_METHODS


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def test_importing_the_package_does_not_import_sqlite3() -> None:
    result = run(
        "import bounce_middleware, sys; "
        "assert 'sqlite3' not in sys.modules, 'sqlite3 imported'; "
        "assert 'bounce_middleware.sqlite_store' not in sys.modules"
    )
    assert result.returncode == 0, result.stderr


def test_sqlite_store_is_imported_on_first_use() -> None:
    result = run(
        "import sys; from bounce_middleware import SQLiteStore; "
        "from bounce_middleware.sqlite_store import SQLiteStore as Real; "
        "assert SQLiteStore is Real and 'sqlite3' in sys.modules; "
        "import bounce_middleware; assert bounce_middleware.SQLiteStore is Real"
    )
    assert result.returncode == 0, result.stderr


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'SQLStore'"):
        bounce_middleware.SQLStore  # noqa: B018


def test_everything_in_all_is_importable() -> None:
    for name in bounce_middleware.__all__:
        assert getattr(bounce_middleware, name) is not None, name
    assert sorted(bounce_middleware.__all__) == bounce_middleware.__all__


def test_the_public_surface() -> None:
    assert set(bounce_middleware.__all__) == {
        "Answer",
        "Bounce",
        "BounceError",
        "BounceKind",
        "BounceMiddleware",
        "Claim",
        "ClaimState",
        "ConfigurationError",
        "Delivery",
        "Handler",
        "ImproperlyInstalled",
        "MemoryStore",
        "PayloadError",
        "Record",
        "SQLiteStore",
        "Store",
        "StoreUnavailable",
        "open_store",
    }
    # The answer type the public process() and dispatch() return, at its old path too.
    from bounce_middleware.middleware import Answer as OldPath

    assert bounce_middleware.Answer is Answer is OldPath
    assert Answer.__doc__ is not None and "Public" in Answer.__doc__


def test_the_shared_adapter_vocabulary() -> None:
    assert {bounce_middleware.BounceKind.HARD} == DEFAULT_NOTIFY_KINDS
    assert {"GET"} == NOTICE_METHODS
