"""Conversion of the stored records to and from JSON-able dicts.

Backend-independent: both backends keep these dicts as JSON text (the
Datastore backend in an unindexed entity property). The round trip is
exact: bytes travel as base64 text, a TaskState by its name (so renumbering
can never silently change a stored state), and the (key, value) pairs of a
DimensionPairs come back as tuples.

Conversion is driven by the dataclasses' type hints, compiled once per type
(records are converted on every Store call, so this is a hot path): a field
added to the model with a default needs no change here, and records stored
before it was added decode with that default. Keys the model does not know
are ignored, so a server rolled back to an older version can still read
records a newer one wrote. Values typed `Any` (a bot's state) must already be
JSON types; they pass through as they are.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from server.model import (
    ApiToken,
    Bot,
    BotEvent,
    Queue,
    SigningKey,
    TaskReport,
    TaskRequest,
    TaskResult,
)

# The records a Store persists; nested ones (TaskSlice, ...) come along.
Record = TaskRequest | TaskResult | Bot | BotEvent | Queue | TaskReport | SigningKey | ApiToken
R = TypeVar("R", bound=Record)

# Converts one value; None where the value needs no conversion.
_Convert = Callable[[Any], Any] | None


def to_dict(record: Record) -> dict[str, Any]:
    """Returns `record` as a dict of JSON types (str, int, float, bool, None, list, dict)."""
    encode, _ = _converters(type(record))
    assert encode is not None
    encoded: dict[str, Any] = encode(record)
    return encoded


def from_dict(cls: type[R], data: dict[str, Any]) -> R:
    """Rebuilds a record of type `cls` from `to_dict`'s output.

    Raises ValueError when `data` does not describe a `cls`.
    """
    _, decode = _converters(cls)
    assert decode is not None
    try:
        record = decode(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"not a stored {cls.__name__}: {e!r}") from e
    assert isinstance(record, cls)
    return record


def dumps(record: Record) -> str:
    """Returns `record` as compact JSON text."""
    return json.dumps(to_dict(record), separators=(",", ":"))


def loads(cls: type[R], text: str | bytes) -> R:
    """Rebuilds a record of type `cls` from `dumps`'s output."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"not a stored {cls.__name__}: JSON {type(data).__name__}")
    return from_dict(cls, data)


def _compile(tp: Any) -> tuple[_Convert, _Convert]:
    """Builds (encode, decode) for one type hint; fails at once on a type it cannot store."""
    if tp is Any or tp in (str, int, bool):
        return None, None
    if tp is float:
        # A float field may hold an int (JSON then writes 1, not 1.0): keep floats floats.
        return None, float
    if tp is bytes:
        return _b64encode, _b64decode
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_name, functools.partial(_enum_member, tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_converters(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"cannot store {tp}: only `X | None` unions are supported")
        encode, decode = _converters(rest[0])
        return _optional(encode), _optional(decode)
    if origin is list:
        encode, decode = _converters(args[0])
        return _list_encoder(encode), _list_decoder(decode)
    if origin is tuple and args and args[-1] is not Ellipsis:
        encoders, decoders = zip(*(_converters(a) for a in args), strict=True)
        return _tuple_encoder(encoders), _tuple_decoder(decoders)
    if origin is dict and args[0] is str:
        encode, decode = _converters(args[1])
        return _dict_of(encode), _dict_of(decode)
    raise TypeError(f"cannot store a field of type {tp}")


# Memoized: each type's converters are built once, on first use.
_converters: Callable[[Any], tuple[_Convert, _Convert]] = functools.cache(_compile)


def _dataclass_converters(cls: type[Any]) -> tuple[_Convert, _Convert]:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, *_converters(hints[f.name])) for f in dataclasses.fields(cls) if f.init]

    def encode(obj: Any) -> dict[str, Any]:
        return {
            name: getattr(obj, name) if enc is None else enc(getattr(obj, name))
            for name, enc, _ in fields
        }

    def decode(data: Any) -> Any:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
        return cls(
            **{
                name: data[name] if dec is None else dec(data[name])
                for name, _, dec in fields
                if name in data
            }
        )

    return encode, decode


def _optional(convert: _Convert) -> _Convert:
    if convert is None:
        return None
    return lambda v: None if v is None else convert(v)


def _list_encoder(convert: _Convert) -> _Convert:
    # Copied even when items need no conversion: a dict never shares a record's list.
    if convert is None:
        return list
    return lambda v: [convert(x) for x in v]


def _list_decoder(convert: _Convert) -> _Convert:
    def decode(v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise TypeError(f"expected a list, got {type(v).__name__}")
        return list(v) if convert is None else [convert(x) for x in v]

    return decode


def _dict_of(convert: _Convert) -> _Convert:
    if convert is None:
        return dict
    return lambda v: {k: convert(x) for k, x in v.items()}


def _tuple_encoder(converts: tuple[_Convert, ...]) -> _Convert:
    return lambda v: [x if c is None else c(x) for c, x in zip(converts, v, strict=True)]


def _tuple_decoder(converts: tuple[_Convert, ...]) -> _Convert:
    def decode(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list) or len(v) != len(converts):
            raise TypeError(f"expected a list of {len(converts)} items, got {v!r}")
        return tuple(x if c is None else c(x) for c, x in zip(converts, v, strict=True))

    return decode


def _enum_name(member: enum.Enum) -> str:
    return member.name


def _enum_member(cls: type[enum.Enum], name: str) -> enum.Enum:
    return cls[name]


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
