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

from server import jsonio
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
    encode = _converters(type(record), False)[0]
    assert encode is not None
    encoded: dict[str, Any] = encode(record)
    return encoded


def from_dict(cls: type[R], data: dict[str, Any]) -> R:
    """Rebuilds a record of type `cls` from `to_dict`'s output.

    Raises ValueError when `data` does not describe a `cls`.
    """
    decode = _converters(cls, False)[1]
    assert decode is not None
    try:
        record = decode(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"not a stored {cls.__name__}: {e!r}") from e
    assert isinstance(record, cls)
    return record


def dumps(record: Record) -> str:
    """Returns `record` as compact JSON text.

    orjson writes it (server/jsonio.py), unless it holds a float that is
    not finite, which orjson would write as null: the standard library
    writes those (as `Infinity`, `NaN`), so the round trip stays exact.
    """
    encode = _converters(type(record), True)[0]
    assert encode is not None
    try:
        return jsonio.dumps(encode(record))
    except _NotFinite:
        return json.dumps(to_dict(record), separators=(",", ":"))


def dumps_json_value(value: Any) -> str:
    """A value of a field typed Any (a bot's state) as strict JSON text, as `dumps` writes it.

    Raises ValueError for a value that holds a float JSON cannot write
    (NaN, an infinity): `dumps` writes those as the standard library does.
    """
    try:
        return jsonio.dumps(_check_any(value))
    except _NotFinite as e:
        raise ValueError("the value holds a float that is not finite") from e


def loads(cls: type[R], text: str | bytes) -> R:
    """Rebuilds a record of type `cls` from `dumps`'s output."""
    data = jsonio.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"not a stored {cls.__name__}: JSON {type(data).__name__}")
    return from_dict(cls, data)


class _NotFinite(Exception):
    """A float that orjson cannot write exactly (NaN or an infinity)."""


def _compile(tp: Any, checked: bool) -> tuple[_Convert, _Convert]:
    """Builds (encode, decode) for one type hint; fails at once on a type it cannot store.

    A `checked` encoder raises _NotFinite on a float that is not finite,
    also inside values typed Any.
    """
    if tp is Any:
        return (_check_any if checked else None), None
    if tp in (str, int, bool):
        return None, None
    if tp is float:
        # A float field may hold an int (JSON then writes 1, not 1.0): keep floats floats.
        return (_check_float if checked else None), float
    if tp is bytes:
        return _b64encode, _b64decode
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        # A plain dict's lookup: EnumType.__getitem__ is a Python call per decoded state.
        return _enum_name, dict(tp.__members__).__getitem__
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_converters(tp, checked)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"cannot store {tp}: only `X | None` unions are supported")
        encode, decode = _converters(rest[0], checked)
        return _optional(encode), _optional(decode)
    if origin is list:
        encode, decode = _converters(args[0], checked)
        return _list_encoder(encode), _list_decoder(decode)
    if origin is tuple and args and args[-1] is not Ellipsis:
        encoders, decoders = zip(*(_converters(a, checked) for a in args), strict=True)
        return _tuple_encoder(encoders), _tuple_decoder(decoders)
    if origin is dict and args[0] is str:
        encode, decode = _converters(args[1], checked)
        return _dict_of(encode), _dict_of(decode)
    raise TypeError(f"cannot store a field of type {tp}")


# Memoized: each type's converters are built once, on first use.
_converters: Callable[[Any, bool], tuple[_Convert, _Convert]] = functools.cache(_compile)


def _dataclass_converters(cls: type[Any], checked: bool) -> tuple[_Convert, _Convert]:
    """Converters of one record type, generated as straight-line code.

    A generic loop over the fields (getattr, a dict comprehension, then the
    class's frozen __init__) cost several times more, and records are
    converted on every Store call. The decoder builds the instance without
    __init__ (the model's records have no __post_init__ and no init=False
    fields, which the checks below make sure of) and fills in the defaults
    of missing fields as __init__ would.
    """
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    if (
        hasattr(cls, "__post_init__")
        or hasattr(cls, "__slots__")
        or not all(f.init for f in fields)
    ):
        raise TypeError(f"cannot store {cls.__name__}: it needs its own __init__")
    scope: dict[str, Any] = {"_cls": cls, "_new": object.__new__, "_set": object.__setattr__}
    scope["_missing"] = object()
    encode_items, decode_lines, built = [], [], []
    for i, f in enumerate(fields):
        if not f.name.isidentifier():
            raise TypeError(f"cannot store field {f.name!r} of {cls.__name__}")
        enc, dec = _converters(hints[f.name], checked)
        value = f"d[{f.name!r}]"
        if enc is not None:
            scope[f"_e{i}"] = enc
            value = f"_e{i}({value})"
        encode_items.append(f"{f.name!r}: {value}")
        convert = "v" if dec is None else f"_d{i}(v)"
        if dec is not None:
            scope[f"_d{i}"] = dec
        if f.default is not dataclasses.MISSING:
            scope[f"_default{i}"] = f.default
            fallback = f"_default{i}"
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory{i}"] = f.default_factory
            fallback = f"_factory{i}()"
        else:
            fallback = ""
        if fallback:
            decode_lines.append(f"    v = get({f.name!r}, _missing)")
            decode_lines.append(f"    f{i} = {fallback} if v is _missing else {convert}")
        else:
            decode_lines.append(f"    v = data[{f.name!r}]")
            decode_lines.append(f"    f{i} = {convert}")
        built.append(f"{f.name!r}: f{i}")
    source = "\n".join(
        [
            "def encode(obj):",
            "    d = obj.__dict__",
            f"    return {{{', '.join(encode_items)}}}",
            "def decode(data):",
            "    if not isinstance(data, dict):",
            "        raise TypeError(f'expected an object for {_cls.__name__},"
            " got {type(data).__name__}')",
            "    get = data.get",
            *decode_lines,
            "    obj = _new(_cls)",
            f"    _set(obj, '__dict__', {{{', '.join(built)}}})",
            "    return obj",
        ]
    )
    # The source is made from the model's own field names, checked above.
    exec(compile(source, f"<codec {cls.__name__}>", "exec"), scope)
    return scope["encode"], scope["decode"]


def _check_float(value: Any) -> Any:
    # x - x is 0 for every finite number (ints too) and NaN for NaN and the infinities.
    if value - value != 0:
        raise _NotFinite
    return value


def _check_any(value: Any) -> Any:
    """Passes a JSON value through after making sure it holds no float orjson would change."""
    kind = type(value)
    if kind is float:
        if value - value != 0:
            raise _NotFinite
    elif kind is dict:
        for item in value.values():
            if type(item) in _NESTED:
                _check_any(item)
    elif kind is list:
        for item in value:
            if type(item) in _NESTED:
                _check_any(item)
    return value


_NESTED = frozenset({float, dict, list})


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


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
