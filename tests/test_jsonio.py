"""JSON in and out (server/jsonio.py): orjson's speed with the standard library's results."""

from __future__ import annotations

import json
import math

import pytest

from server import jsonio


def test_integers_beyond_64_bits_are_read_exactly() -> None:
    """An integer orjson would turn into a float is read exactly, as json.loads reads it."""
    big = 123456789012345678901234567890
    assert jsonio.loads(f'{{"n": {big}, "m": -9223372036854775809}}') == {
        "n": big,
        "m": -9223372036854775809,
    }
    assert jsonio.dumps({"n": big}) == f'{{"n":{big}}}'


def test_texts_orjson_refuses_are_read_as_the_standard_library_reads_them() -> None:
    """NaN and Infinity literals parse as json.loads parses them."""
    parsed = jsonio.loads(b'{"a": NaN, "b": Infinity}')
    assert math.isnan(parsed["a"])
    assert parsed["b"] == math.inf


def test_invalid_json_raises_json_decode_error() -> None:
    """Text that is not JSON raises json.JSONDecodeError, for str and bytes alike."""
    for bad in ("{bad", b"[1,", ""):
        with pytest.raises(json.JSONDecodeError):
            jsonio.loads(bad)


def test_output_is_compact_and_round_trips() -> None:
    """dumps writes compact JSON that reads back equal; dumps_sorted sorts every object's keys."""
    value = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": ""}}
    assert jsonio.loads(jsonio.dumps(value)) == value
    assert jsonio.dumps_bytes(value) == jsonio.dumps(value).encode()
    assert jsonio.dumps_sorted(value) == '{"a":{"y":"","z":"é"},"b":[1,2.5,null,true]}'


def test_values_orjson_cannot_write_are_written_by_the_standard_library() -> None:
    """Non-string keys are written as json.dumps writes them."""
    assert jsonio.dumps({1: "x"}) == '{"1":"x"}'
