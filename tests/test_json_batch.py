"""The shared JSON batch reading: one decode per batch, each element with its own text."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounce_middleware.errors import PayloadError
from bounce_middleware.providers.base import JSON_DECODER, freeze_arrays
from bounce_middleware.providers.json_batch import load_json_array, split_json_array

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.lists(json_values, max_size=6), st.sampled_from(["", " ", "\n", "\r\n\t"]))
def test_split_gives_the_values_the_whole_decode_gives_and_each_elements_text(
    items: list[Any], space: str
) -> None:
    body = "[" + space + ("," + space).join(json.dumps(i) for i in items) + space + "]" + space
    split = split_json_array(body.encode())
    assert split is not None
    values, texts = split
    assert values == load_json_array(body.encode())
    assert [JSON_DECODER.decode(t) for t in texts] == values
    assert all(t == t.strip() for t in texts)


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b"[1,]", b"[1 2]", b"[1] x", b"[", b"[1", b"\xff[]", b'["\\x"]', b"[" * 100_000],
)
def test_split_returns_none_where_load_json_array_explains(body: bytes) -> None:
    assert split_json_array(body) is None
    with pytest.raises(PayloadError):
        load_json_array(body)


def test_a_bom_and_an_empty_array_are_read() -> None:
    assert split_json_array(b"\xef\xbb\xbf [ ] ") == ([], [])


def test_freeze_arrays_copies_only_what_holds_a_list() -> None:
    flat = MappingProxyType({"a": 1, "b": MappingProxyType({"c": "d"})})
    assert freeze_arrays(flat) is flat
    inner: MappingProxyType[str, Any] = MappingProxyType({"l": [1, [2, MappingProxyType({})]]})
    nested: MappingProxyType[str, Any] = MappingProxyType({"a": inner, "k": 1})
    frozen = freeze_arrays(nested)
    assert frozen == {"a": {"l": (1, (2, {}))}, "k": 1}
    assert type(frozen) is MappingProxyType and type(frozen["a"]) is MappingProxyType
    assert nested["a"]["l"] == [1, [2, {}]]  # the decoded value itself is left alone
