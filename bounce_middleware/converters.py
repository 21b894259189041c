"""Converters from settings values (strings from an ``.ini``, or typed values) to Python.

Each raises ``TypeError``, ``ValueError`` or :class:`ConfigurationError` with a
reason that never quotes a secret; the settings reader names the key.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .auth import credential_list
from .errors import ConfigurationError, ImproperlyInstalled
from .model import BounceKind
from .store import Store, open_store

__all__ = [
    "CELERY_KEYS",
    "Converter",
    "as_bool",
    "as_credentials",
    "as_float",
    "as_handoff",
    "as_int",
    "as_kinds",
    "as_list",
    "as_store",
    "resolve",
]

Converter = Callable[[Any], Any]

# A PEM block, BEGIN to the END of the same label; anything between, newlines included.
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


def as_list(value: Any) -> list[Any]:
    """A whitespace/newline separated string, or an iterable, as a list.

    A PEM block in the string (``-----BEGIN PUBLIC KEY-----`` to its
    ``-----END PUBLIC KEY-----``) is one item, whitespace and all: a key the
    constructor accepts in PEM is accepted from settings too (SendGrid's
    ``public_key``, pasted on several lines of an ``.ini``).
    """
    if value is None:
        return []
    if isinstance(value, str):
        if "-----BEGIN " not in value:
            return value.split()
        items: list[Any] = []
        at = 0
        for block in _PEM_BLOCK.finditer(value):
            items += value[at : block.start()].split()
            items.append(block.group())
            at = block.end()
        return items + value[at:].split()
    if isinstance(value, Iterable):
        return list(value)
    raise TypeError("expected a list or a whitespace-separated string")


def as_int(value: Any) -> int:
    """An integer, or a string of digits (``_`` allowed as in Python: ``1_048_576``)."""
    if isinstance(value, bool):
        raise TypeError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().replace("_", "").isdigit():
        return int(value.strip())
    raise TypeError("expected a whole number")


def as_float(value: Any) -> float:
    """A number, or a string holding one."""
    if isinstance(value, bool):
        raise TypeError("expected a number")
    return float(value)


def as_bool(value: Any) -> bool:
    """A bool, or one of true/false/yes/no/on/off/1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise TypeError("expected true or false")


def resolve(value: Any) -> Any:
    """Import ``package.module:attr`` or ``package.module.attr``; other values pass through.

    Raises :class:`ConfigurationError` (never ``TypeError`` or ``ImportError``)
    naming what could not be resolved.
    """
    if not isinstance(value, str):
        return value
    module_name, sep, attr = value.partition(":")
    if sep:
        return _getattr_path(_import(module_name, value), attr, value)
    parts = value.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigurationError(f"{value!r} is not a dotted name")
    # Without a colon the module/attribute boundary is unknown: try the longest module first.
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this candidate does not exist" means try a shorter one.
            if exc.name is None or not module_name.startswith(exc.name):
                raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from None
            continue
        except Exception as exc:
            # The module exists but fails to import (SyntaxError, its own ImportError...).
            raise ConfigurationError(
                f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return _getattr_path(module, ".".join(parts[split:]), value)
    raise ConfigurationError(f"cannot import any module of {value!r}")


def _import(module_name: str, value: str) -> Any:
    if not module_name:
        raise ConfigurationError(f"{value!r} is not a dotted name")
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _getattr_path(target: Any, attr: str, value: str) -> Any:
    parts = attr.split(".")
    if not all(parts):
        raise ConfigurationError(f"{value!r} is not a dotted name")
    for part in parts:
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{value!r}: {target!r} has no attribute {part!r}") from None
    return target


def as_kinds(value: Any) -> frozenset[BounceKind]:
    """Kind names (``hard soft``) as a set of :class:`BounceKind`."""
    try:
        return frozenset(BounceKind(str(k).strip()) for k in as_list(value))
    except ValueError:
        known = ", ".join(k.value for k in BounceKind)
        raise TypeError(f"expected kind names among: {known}") from None


def as_store(value: Any) -> Store:
    """A store URL (``sqlite:///bounces.sqlite3``), a dotted name of a store, or a store."""
    if isinstance(value, str) and ("://" in value or value.startswith("memory:")):
        return open_store(value)
    store = resolve(value)
    # A class (whose instances have `claim`) or a factory function: call it.
    if isinstance(store, type) or (callable(store) and not hasattr(store, "claim")):
        store = store()
    if not hasattr(store, "claim"):
        raise TypeError("expected a store URL or a store object")
    return store  # type: ignore[no-any-return]


def as_credentials(value: Any) -> list[str]:
    """``user:password`` entries (a list, or one whitespace/newline separated string), checked.

    Errors name the entry's position and the problem, never the secret.
    """
    return credential_list(value)


def as_handoff(value: Any) -> Any:
    """A handoff object (``enqueue(keys)``), or the dotted name of one or of its factory."""
    handoff = resolve(value)
    if isinstance(handoff, type) or (callable(handoff) and not hasattr(handoff, "enqueue")):
        handoff = handoff()
    if not callable(getattr(handoff, "enqueue", None)):
        raise TypeError("expected a handoff (an object with enqueue(keys)) or its dotted name")
    return handoff


def _celery_app(value: Any) -> Any:
    app = resolve(value)
    if not callable(getattr(app, "send_task", None)):
        raise TypeError("expected a Celery app or its dotted name (myproject.celery:app)")
    return app


def _count(value: Any) -> int:
    number = as_int(value)
    if number < 0:
        raise ValueError("expected a whole number, 0 or more")
    return number


def _seconds(value: Any) -> float:
    seconds = as_float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError("expected a positive number of seconds")
    return seconds


#: The keys that build a :class:`~bounce_middleware.celery_tasks.CeleryHandoff`:
#: ``celery_app`` and, after the prefix ``celery_``, its constructor's options.
CELERY_KEYS: Mapping[str, Converter] = {
    "celery_app": _celery_app,
    "celery_queue": str,
    "celery_max_retries": _count,
    "celery_retry_backoff": _seconds,
    "celery_retry_backoff_max": _seconds,
    "celery_retry_jitter": as_bool,
    "celery_sweep_older_than": _seconds,
    "celery_publish_retries": _count,
}


def celery_handoff(result: dict[str, Any], shown: Callable[[str], str]) -> None:
    """Replace the ``celery_*`` keys read into ``result`` by the ``handoff`` they make."""
    given = {key: result.pop(key) for key in CELERY_KEYS if key in result}
    if not given:
        return
    if "celery_app" not in given:
        raise ConfigurationError(
            f"setting {shown(next(iter(given)))} needs {shown('celery_app')}, the Celery app "
            "that takes the events"
        )
    if "handoff" in result:
        raise ConfigurationError(
            f"settings {shown('handoff')} and {shown('celery_app')} both hand events off; keep one"
        )
    # Imported here: Celery is an optional extra, needed only by those who name it.
    try:
        from .celery_tasks import CeleryHandoff
    except ImportError as exc:
        raise ImproperlyInstalled("celery", "Celery") from exc
    app = given.pop("celery_app")
    options = {key[len("celery_") :]: value for key, value in given.items()}
    result["handoff"] = CeleryHandoff(app, **options)
