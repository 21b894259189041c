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


def test_postgres_store_and_psycopg_are_imported_on_first_use() -> None:
    result = run(
        "import sys; import bounce_middleware; "
        "assert 'psycopg' not in sys.modules; "
        "from bounce_middleware import PostgresStore; "
        "from bounce_middleware.postgres_store import PostgresStore as Real; "
        "assert PostgresStore is Real"
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
        "PostgresStore",
        "Record",
        "SQLiteStore",
        "Store",
        "StoreUnavailable",
        "TemporaryFailure",
        "Unauthorized",
        "WebhookRequest",
        "open_store",
    }
    # The answer type the public process() and dispatch() return, at its old path too.
    from bounce_middleware.middleware import Answer as OldPath

    assert bounce_middleware.Answer is Answer is OldPath
    assert Answer.__doc__ is not None and "Public" in Answer.__doc__


def test_the_shared_adapter_vocabulary() -> None:
    assert {bounce_middleware.BounceKind.HARD} == DEFAULT_NOTIFY_KINDS
    assert {"GET"} == NOTICE_METHODS


def test_providers_are_imported_only_when_named() -> None:
    # An application that configures Postmark never loads the other providers, nor
    # cryptography (the crypto extra) that SendGrid and Amazon SES need.
    result = run(
        "import sys; from bounce_middleware import BounceMiddleware; "
        "from bounce_middleware.providers import Postmark, PROVIDERS; "
        "assert len(PROVIDERS) >= 4, PROVIDERS; "
        "loaded = [m for m in sys.modules if m.startswith('bounce_middleware.providers.')]; "
        "assert sorted(loaded) == ['bounce_middleware.providers.base', "
        "'bounce_middleware.providers.postmark'], loaded; "
        "assert 'cryptography' not in sys.modules; "
        "from bounce_middleware.providers import SendGrid; "
        "assert SendGrid.__module__ == 'bounce_middleware.providers.sendgrid'"
    )
    assert result.returncode == 0, result.stderr


def test_every_registered_provider_keeps_the_protocol() -> None:
    from bounce_middleware.providers import PROVIDERS, Provider, provider_class

    for name in PROVIDERS:
        cls = provider_class(name)
        assert cls.name == name
        members = ("name", "methods", "refuse_status", "retry_status", "authenticate", "parse")
        assert all(hasattr(Provider, m) or m in Provider.__annotations__ for m in members)
        for attribute in (*members, "options"):
            assert hasattr(cls, attribute), (name, attribute)
        assert isinstance(cls.methods, frozenset) and cls.methods, name


def test_every_package_is_in_the_wheel() -> None:
    # setuptools installs only the packages pyproject.toml lists: a package left out
    # works in a source checkout and is missing from every installed copy.
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "bounce_middleware").rglob("__init__.py")
        if "adapters" not in init.parts
    }
    found |= {
        "bounce_middleware.adapters." + ".".join(init.parent.relative_to(root / "adapters").parts)
        for init in (root / "adapters").rglob("__init__.py")
    }
    found = {name.rstrip(".") for name in found}
    assert found <= listed, sorted(found - listed)
