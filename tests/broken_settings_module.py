"""A module that fails on import, for the settings tests of ``resolve``."""

from __future__ import annotations

raise RuntimeError("this module is broken on purpose")
