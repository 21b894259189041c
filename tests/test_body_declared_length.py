"""``declared_length``: the one reading of Content-Length that both fronts use."""

from __future__ import annotations

import pytest

from bounce_middleware.body import BodyTooLarge, declared_length
from bounce_middleware.errors import PayloadError


@pytest.mark.parametrize(
    ("value", "length"),
    [(None, None), ("", None), ("0", 0), ("0" * 30, 0), ("0042", 42), ("1000", 1000)],
)
def test_a_length_is_read_as_a_number_of_bytes(value: str | None, length: int | None) -> None:
    assert declared_length(value, 1000) == length


@pytest.mark.parametrize("value", ["1001", "9" * 19, "0" * 30 + "9" * 5000])
def test_over_the_limit_is_too_large_however_many_digits(value: str) -> None:
    with pytest.raises(BodyTooLarge):
        declared_length(value, 1000)


@pytest.mark.parametrize("value", ["abc", "-1", "+1", "1e3", " 12", "1 2", "\u00b2", "\u0661"])
def test_anything_but_ascii_digits_is_refused(value: str) -> None:
    with pytest.raises(PayloadError, match="Content-Length is not a number"):
        declared_length(value, 1000)
