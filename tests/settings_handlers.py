"""Handlers importable by dotted name, for the settings tests."""

from __future__ import annotations

from bounce_middleware import Bounce

received: list[Bounce] = []


def remember(bounce: Bounce) -> None:
    """Keep the bounce for the test to inspect."""
    received.append(bounce)


class Namespace:
    """Holds a handler one attribute deep, to test ``module:Namespace.attr`` names."""

    @staticmethod
    def nested(bounce: Bounce) -> None:
        """Keep the bounce too."""
        received.append(bounce)
