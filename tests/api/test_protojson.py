"""server/api/protojson.py against json_format, the authority, on every API message type.

Random messages of every type the client API declares are written by both
and must give equal dicts; their JSON (in either field spelling, int64s as
numbers or strings) is read by both and must give equal messages; and
damaged JSON (wrong types, nulls, unknown and repeated fields, values out
of range) must be read to the same message or refused with the same error.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import descriptor, json_format, message, timestamp_pb2

from protos.api import auth_pb2, bots_pb2, common_pb2, server_pb2, tasks_pb2
from server.api import protojson
from server.api.transcoder import message_class

FD = descriptor.FieldDescriptor
ROUNDS = 40


def api_types() -> list[descriptor.Descriptor]:
    """Every message type the client API's files declare, nested ones too."""
    out: list[descriptor.Descriptor] = []

    def walk(desc: descriptor.Descriptor) -> None:
        out.append(desc)
        for nested in desc.nested_types:
            if not nested.GetOptions().map_entry:
                walk(nested)

    for module in (auth_pb2, bots_pb2, common_pb2, server_pb2, tasks_pb2):
        for desc in module.DESCRIPTOR.message_types_by_name.values():
            walk(desc)
    return out


TYPES = api_types()
IDS = [d.full_name for d in TYPES]

STRINGS = ["", "a", "pool:default", "ünïcødé ✓", "x" * 40, 'quote " and \\ slash', "\n\t"]
INTS = [0, 1, -1, 7, 2**31 - 1, -(2**31), 2**53 + 1]
DOUBLES = [0.0, 1.5, -2.25, 1e-9, 3.0e300, float("nan"), float("inf"), float("-inf")]


def random_message(
    cls: type[message.Message], rng: random.Random, depth: int = 0
) -> message.Message:
    """A message with each field set or not at random, nested messages to depth 3."""
    msg = cls()
    desc: descriptor.Descriptor = msg.DESCRIPTOR  # type: ignore[assignment]
    for field in desc.fields:
        if rng.random() < 0.3:
            continue
        count = rng.randint(0, 3) if field.is_repeated else 1
        for _ in range(count):
            value = random_value(field, rng, depth)
            if value is None:
                continue
            if field.type == FD.TYPE_MESSAGE:
                target = getattr(msg, field.name)
                (target.add() if field.is_repeated else target).CopyFrom(value)
            elif field.is_repeated:
                getattr(msg, field.name).append(value)
            else:
                setattr(msg, field.name, value)
    return msg


def random_value(field: descriptor.FieldDescriptor, rng: random.Random, depth: int) -> Any:
    kind = field.type
    if kind == FD.TYPE_MESSAGE:
        assert field.message_type is not None
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return timestamp_pb2.Timestamp(
                seconds=rng.randint(0, 4_000_000_000),
                nanos=rng.choice([0, 0, 5_000_000, 123_456_000, 999_999_999]),
            )
        if depth >= 3:
            return None
        return random_message(message_class(field.message_type), rng, depth + 1)
    if kind == FD.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return rng.choice([*numbers, 3])  # 3: a number no API enum names
    if kind == FD.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FD.TYPE_STRING:
        return rng.choice(STRINGS)
    if kind == FD.TYPE_BYTES:
        return rng.choice([b"", b"\x00\xff", b"secret bytes"])
    if kind == FD.TYPE_DOUBLE:
        return rng.choice(DOUBLES)
    if kind in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return rng.choice([*INTS, 2**63 - 1, -(2**63)])
    if kind in (FD.TYPE_UINT32, FD.TYPE_FIXED32, FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return abs(rng.choice(INTS))
    return rng.choice([v for v in INTS if -(2**31) <= v < 2**31])


def reference_json(msg: message.Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def deep_same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(deep_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(deep_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def read_both(cls: type[message.Message], value: Any) -> tuple[Any, Any]:
    """What json_format and protojson make of `value`: a message's bytes or the error."""

    def outcome(read: Any) -> Any:
        msg = cls()
        try:
            read(value, msg)
        except json_format.ParseError as e:
            return ("error", str(e))
        return msg.SerializeToString(deterministic=True)

    return outcome(json_format.ParseDict), outcome(protojson.parse)


def spellings(value: Any, rng: random.Random) -> Any:
    """The same JSON with keys in either spelling, as json_format accepts."""
    if isinstance(value, list):
        return [spellings(v, rng) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        camel = key.split("_")[0] + "".join(p.title() for p in key.split("_")[1:])
        out[camel if rng.random() < 0.5 else key] = spellings(item, rng)
    return out


@pytest.mark.parametrize("desc", TYPES, ids=IDS)
def test_writes_what_json_format_writes(desc: descriptor.Descriptor) -> None:
    rng = random.Random(desc.full_name)
    cls = message_class(desc)
    for _ in range(ROUNDS):
        msg = random_message(cls, rng)
        assert deep_same(protojson.to_json(msg), reference_json(msg)), msg


@pytest.mark.parametrize("desc", TYPES, ids=IDS)
def test_reads_what_json_format_reads(desc: descriptor.Descriptor) -> None:
    rng = random.Random(desc.full_name)
    cls = message_class(desc)
    for _ in range(ROUNDS):
        value = spellings(reference_json(random_message(cls, rng)), rng)
        expected, got = read_both(cls, value)
        assert not isinstance(expected, tuple), expected
        assert got == expected, value


def damaged(value: dict[str, Any], rng: random.Random) -> Iterator[dict[str, Any]]:
    """Copies of `value` with one thing wrong (or odd but allowed) somewhere in it."""
    spots: list[tuple[dict[str, Any], str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                spots.append((node, key))
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    odd_values: list[Any] = [
        None, True, 1.0, 2.5, "12", "1.0", " 3", "abc", "NaN", "Infinity", "", [], {}, [None],
        2**64, -1, "2026-12-01T00:00:00Z", "PENDING", 16, {"x": 1}, ["a", 1],
    ]  # fmt: skip
    # No lone surrogates: orjson refuses them in a body, and json_format
    # fails on some with a SystemError (protobuf 7.36).
    for _ in range(12):
        copied = copy.deepcopy(value)
        spots.clear()
        walk(copied)
        if spots and rng.random() < 0.8:
            node, key = rng.choice(spots)
            node[key] = rng.choice(odd_values)
        else:
            copied[rng.choice(["unknown_field", "also_not_a_field"])] = 1
        yield copied


@pytest.mark.parametrize("desc", TYPES, ids=IDS)
def test_refuses_or_accepts_what_json_format_does(desc: descriptor.Descriptor) -> None:
    rng = random.Random(desc.full_name)
    cls = message_class(desc)
    for _ in range(ROUNDS // 4):
        value = reference_json(random_message(cls, rng))
        for bad in damaged(value, rng):
            expected, got = read_both(cls, bad)
            assert got == expected, bad


def test_a_field_given_in_both_spellings_is_read_as_json_format_reads_it() -> None:
    value = {"task_slices": [], "taskSlices": [{"expiration_secs": 60}], "name": "x"}
    expected, got = read_both(tasks_pb2.NewTaskRequest, value)
    assert got == expected


def test_a_canonical_body_is_read_without_json_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the module: the usual create body never reaches the slow path."""

    def slow(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("json_format was used")

    monkeypatch.setattr(json_format, "ParseDict", slow)
    monkeypatch.setattr(json_format, "MessageToDict", slow)
    body = {
        "name": "t",
        "priority": 100,
        "tags": ["a:b"],
        "task_slices": [
            {
                "expiration_secs": "3600",
                "wait_for_capacity": True,
                "properties": {
                    "command": ["true"],
                    "dimensions": [{"key": "pool", "value": "default"}],
                    "executionTimeoutSecs": 60,
                },
            }
        ],
    }
    msg = tasks_pb2.NewTaskRequest()
    protojson.parse(body, msg)
    assert msg.task_slices[0].expiration_secs == 3600
    assert msg.task_slices[0].properties.execution_timeout_secs == 60
    assert msg.HasField("priority")
    out = protojson.to_json(tasks_pb2.TaskRequestMetadataResponse(task_id="abc"))
    assert out["task_id"] == "abc"
    assert "request" not in out
