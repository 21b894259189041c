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
from bounce_middleware.providers.json_batch import (
    load_json_array,
    load_object_or_array,
    split_json_array,
)

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


@pytest.mark.parametrize(
    ("body", "value", "text"),
    [
        (b'{"a": 1}', {"a": 1}, b'{"a": 1}'),
        (b'\xef\xbb\xbf \r\n{"a": [1]}\n', {"a": (1,)}, b'{"a": [1]}'),
        (b" [ ] ", [], b"[ ]"),
        (b'\t[{"a": 1}, 2]', [{"a": 1}, 2], b'[{"a": 1}, 2]'),
    ],
)
def test_an_object_or_an_array_is_read_with_its_text(body: bytes, value: Any, text: bytes) -> None:
    decoded, received = load_object_or_array(body, expected="posts JSON")
    assert decoded == value and received == text
    # an object as load_json_object makes it (read-only, arrays as tuples); an array a list
    assert type(decoded) is (list if text.startswith(b"[") else MappingProxyType)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is empty; posts JSON"),
        (b"\xef\xbb\xbf \r\n\t", "body is empty; posts JSON"),
        (b'"text"', "body is a JSON string; expected an object"),
        (b"[1,]", "body is not valid JSON"),
        (b"{", "body is not valid JSON"),
        (b"\xff{}", "body is not UTF-8 encoded JSON"),
        (b"[" * 100_000, "body is nested too deeply"),
    ],
)
def test_what_is_neither_an_object_nor_an_array_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as refused:
        load_object_or_array(body, expected="posts JSON")
    assert refused.value.reason == reason
