"""The record codec (server/store/codec.py): exact, JSON-only round trips.

Pure functions, so these tests are plain (not async). The property tests
build records from the model's own type hints, so a field added to the model
is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.model import (
    Bot,
    BotEvent,
    CacheEntry,
    Queue,
    TaskProperties,
    TaskRequest,
    TaskResult,
    TaskSlice,
    TaskState,
)
from server.store import codec

RECORD_TYPES = [TaskRequest, TaskResult, Bot, BotEvent, Queue]

_json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
# What a bot may put in its state: any JSON.
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Values of one type hint of the model; NaN is left out as it equals nothing."""
    if tp is Any:
        return json_values
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(max_size=8),
        int: st.integers(min_value=-(2**63), max_value=2**63 - 1),
        float: st.floats(allow_nan=False),
        bool: st.booleans(),
        bytes: st.binary(max_size=16),
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(tp)}
        return st.builds(tp, **fields)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is types.UnionType:
        (inner,) = (a for a in args if a is not type(None))
        return st.none() | strategy_for(inner)
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=3)
    if origin is tuple:
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is dict:
        return st.dictionaries(st.text(max_size=5), strategy_for(args[1]), max_size=3)
    raise TypeError(f"no strategy for {tp}")


records = st.one_of(*(strategy_for(cls) for cls in RECORD_TYPES))


def is_json(value: object) -> bool:
    """True when `value` is made only of the types JSON has."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


@given(records)
def test_dict_round_trip(record: TaskRequest | TaskResult | Bot | BotEvent | Queue) -> None:
    """from_dict(to_dict(r)) equals r for every kind of stored record."""
    assert codec.from_dict(type(record), codec.to_dict(record)) == record


@given(records)
def test_json_round_trip(record: TaskRequest | TaskResult | Bot | BotEvent | Queue) -> None:
    """loads(dumps(r)) equals r, tuples and bytes included."""
    assert codec.loads(type(record), codec.dumps(record)) == record


@given(records)
def test_dict_is_plain_json(record: TaskRequest | TaskResult | Bot | BotEvent | Queue) -> None:
    """to_dict produces only JSON types: no bytes, enums, tuples or dataclasses."""
    assert is_json(codec.to_dict(record))


def sample_request() -> TaskRequest:
    """A request using every nested type."""
    props = TaskProperties(
        command=["python", "run.py"],
        dimensions=[("os", "Linux|Mac"), ("pool", "ci")],
        env={"A": "1"},
        env_prefixes={"PATH": ["bin"]},
        caches=[CacheEntry(name="git", path="cache/git")],
        secret_bytes=b"\x00\xffsecret",
    )
    return TaskRequest(
        task_id="1234567890abcde0",
        created_ts=1_700_000_000.5,
        name="build",
        priority=50,
        slices=[TaskSlice(properties=props, expiration_secs=300, wait_for_capacity=True)],
        tags=["a:b"],
    )


def test_encoding_of_special_types() -> None:
    """Bytes become base64 text, dimension pairs become lists, and states go by name."""
    data = codec.to_dict(sample_request())
    props = data["slices"][0]["properties"]
    assert props["secret_bytes"] == "AP9zZWNyZXQ="
    assert props["dimensions"] == [["os", "Linux|Mac"], ["pool", "ci"]]
    result = TaskResult(
        task_id="x0", state=TaskState.BOT_DIED, created_ts=1.0, modified_ts=2.0, priority=1
    )
    assert codec.to_dict(result)["state"] == "BOT_DIED"


def test_decoding_restores_tuples() -> None:
    """Decoded dimension pairs are tuples again, as the model declares."""
    request = codec.loads(TaskRequest, codec.dumps(sample_request()))
    pairs = request.slices[0].properties.dimensions
    assert pairs == [("os", "Linux|Mac"), ("pool", "ci")]
    assert all(type(p) is tuple for p in pairs)


def test_missing_fields_take_defaults_and_unknown_keys_are_ignored() -> None:
    """Records from an older or newer schema decode: defaults fill gaps, extra keys are dropped."""
    bot = codec.from_dict(Bot, {"bot_id": "b1", "added_later": 3})
    assert bot == Bot(bot_id="b1")


def test_float_fields_stay_floats() -> None:
    """A float field stored as a JSON integer decodes as a float."""
    queue = codec.from_dict(Queue, {"key": "k", "dimensions": [], "created_ts": 5})
    assert type(queue.created_ts) is float


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (Bot, {}),
        (Queue, {"key": "k", "dimensions": "nope", "created_ts": 1.0}),
        (TaskResult, {"task_id": "x", "state": "NOT_A_STATE", "created_ts": 1.0}),
        (Queue, {"key": "k", "dimensions": [["a", "b", "c"]], "created_ts": 1.0}),
    ],
)
def test_bad_data_is_a_value_error(cls: type[Any], data: dict[str, Any]) -> None:
    """Data that does not describe the record raises ValueError naming the type."""
    with pytest.raises(ValueError, match=f"not a stored {cls.__name__}"):
        codec.from_dict(cls, data)


def test_loads_rejects_non_objects() -> None:
    """JSON text that is not an object is not a record."""
    with pytest.raises(ValueError, match="not a stored Bot"):
        codec.loads(Bot, json.dumps([1, 2]))
