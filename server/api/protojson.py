"""The proto3 JSON mapping of the client API, compiled per message type.

protobuf's json_format walks a message's descriptor field by field on every
call, in Python: a task's creation spent about 50 µs reading its body and
70 µs writing its answer there, and a page of 100 tasks several
milliseconds. Here each message type is compiled once: its writer is
generated code, one statement per field (like the store's record codecs),
and its reader a table of field setters under both spellings of each name.

json_format stays the authority. Writing, a message type holding anything
the writers do not cover (float fields, maps, extensions, well-known types
but Timestamp and Duration) is written by json_format whole. Reading, the
setters accept only the canonical forms (an int for an integer field or a
string of ASCII digits, a number for a double, an enum's name or number,
base64 text for bytes, an RFC 3339 string for a Timestamp, no nulls, each
field once), which json_format reads to the same message; anything else (a
float for an integer, an unknown field, a wrong type) is read again by
json_format from scratch, so it is accepted or refused exactly as
json_format does, with its error message. tests/api/test_protojson.py
checks both directions against json_format.
"""

from __future__ import annotations

import base64
import contextlib
import keyword
import math
import re
from collections.abc import Callable
from typing import Any, cast

from google.protobuf import descriptor, json_format, message

FD = descriptor.FieldDescriptor

# The well-known types the compiled code covers: both are written and read
# by their own ToJsonString and FromJsonString, as json_format does.
_TIME_TYPES = {"google.protobuf.Timestamp", "google.protobuf.Duration"}

_INT64_TYPES = {FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_FIXED64, FD.TYPE_SFIXED64}
_INT32_TYPES = {FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_SINT32, FD.TYPE_FIXED32, FD.TYPE_SFIXED32}
_DIGITS = re.compile(r"-?[0-9]+")
# json_format refuses strings holding half of a surrogate pair.
_SURROGATE = re.compile("[\ud800-\udfff]")

Json = dict[str, Any]
Convert = Callable[[Any], Any]


class _Fallback(Exception):
    """Raised on input outside the canonical forms, or a type not covered: json_format takes it."""


def to_json(msg: message.Message) -> Json:
    """json_format.MessageToDict with proto field names and fields without presence shown."""
    encode = _encoder(_descriptor(msg))
    if encode is not None:
        return encode(msg)
    out: Json = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def parse(value: Any, msg: message.Message) -> None:
    """json_format.ParseDict(value, msg) into an empty `msg`; raises json_format.ParseError."""
    read = _reader(_descriptor(msg))
    try:
        read(value, msg)
        return
    except (_Fallback, ValueError, TypeError, OverflowError):
        msg.Clear()
    json_format.ParseDict(value, msg)


def _descriptor(msg: message.Message) -> descriptor.Descriptor:
    return cast(descriptor.Descriptor, msg.DESCRIPTOR)


# Writing.

_encoders: dict[str, Callable[[message.Message], Json] | None] = {}


def _encoder(desc: descriptor.Descriptor) -> Callable[[message.Message], Json] | None:
    """The compiled writer of a message type; None when json_format must write it."""
    name = desc.full_name
    if name not in _encoders:
        _encoders[name] = None  # a recursive type is written by json_format
        with contextlib.suppress(_Fallback):
            _encoders[name] = _compile_encoder(desc)
    return _encoders[name]


def _compile_encoder(desc: descriptor.Descriptor) -> Callable[[message.Message], Json]:
    """Straight-line code per message type: a loop over a list of fields cost twice as much."""
    if desc.full_name in _TIME_TYPES or desc.file.name.startswith("google/protobuf/"):
        raise _Fallback(desc.full_name)
    if desc.is_extendable:
        raise _Fallback(desc.full_name)
    scope: dict[str, Any] = {}
    lines = ["def encode(m):", "    out = {}"]
    for i, field in enumerate(sorted(desc.fields, key=lambda f: f.number)):
        name = field.name
        if not name.isidentifier() or keyword.iskeyword(name):
            raise _Fallback(field.full_name)
        convert = _value_encoder(field)
        if field.is_repeated:
            convert = _list_of(convert)
        value = f"m.{name}"
        if convert is not None:
            scope[f"_c{i}"] = convert
            value = f"_c{i}({value})"
        if field.has_presence and not field.is_repeated:
            lines.append(f"    if m.HasField({name!r}):")
            lines.append(f"        out[{name!r}] = {value}")
        else:
            lines.append(f"    out[{name!r}] = {value}")
    lines.append("    return out")
    # The source is made from the descriptor's field names, checked above.
    exec(compile("\n".join(lines), f"<protojson {desc.full_name}>", "exec"), scope)
    encode: Callable[[message.Message], Json] = scope["encode"]
    return encode


def _value_encoder(field: descriptor.FieldDescriptor) -> Convert | None:
    """What writes one value of `field`; None when the value is its own JSON."""
    kind = field.type
    if kind == FD.TYPE_MESSAGE:
        sub = field.message_type
        assert sub is not None, "a message field has its type"
        if sub.GetOptions().map_entry:
            raise _Fallback(field.full_name)
        if sub.full_name in _TIME_TYPES:
            return lambda v: v.ToJsonString()
        encode = _encoder(sub)
        if encode is None:
            raise _Fallback(field.full_name)
        return encode
    if kind in _INT64_TYPES:
        return str
    if kind in _INT32_TYPES or kind in (FD.TYPE_BOOL, FD.TYPE_STRING):
        return None
    if kind == FD.TYPE_DOUBLE:
        return _double
    if kind == FD.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode("utf-8")
    if kind == FD.TYPE_ENUM:
        assert field.enum_type is not None, "an enum field has its enum type"
        if field.enum_type.full_name == "google.protobuf.NullValue":
            raise _Fallback(field.full_name)
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda v: names.get(v, v)
    # Floats (json_format rounds them to their shortest form) and groups.
    raise _Fallback(field.full_name)


def _list_of(convert: Convert | None) -> Convert:
    """What writes a repeated field whose items `convert` writes."""
    if convert is None:
        return list
    return lambda values: [convert(v) for v in values]


def _double(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


# Reading.

_readers: dict[str, Callable[[Any, message.Message], None]] = {}


def _reader(desc: descriptor.Descriptor) -> Callable[[Any, message.Message], None]:
    """The compiled reader of a message type (compiled on first use, so recursion is fine)."""
    read = _readers.get(desc.full_name)
    if read is None:
        read = _readers[desc.full_name] = _compile_reader(desc)
    return read


def _compile_reader(desc: descriptor.Descriptor) -> Callable[[Any, message.Message], None]:
    if desc.full_name in _TIME_TYPES:
        return _read_time
    if desc.file.name.startswith("google/protobuf/") or desc.is_extendable:
        return _refuse
    # Either spelling of a field name -> (field name, its oneof, its setter).
    plans: dict[str, tuple[str, str, Callable[[message.Message, Any], None]]] = {}
    for field in desc.fields:
        oneof = field.containing_oneof.name if field.containing_oneof else ""
        plan = (field.name, oneof, _setter(field))
        plans[field.name] = plans[field.json_name] = plan

    def read(value: Any, msg: message.Message) -> None:
        if type(value) is not dict:
            raise _Fallback(desc.full_name)
        seen: set[str] = set()
        for key, item in value.items():
            plan = plans.get(key)
            if plan is None or item is None:
                raise _Fallback(key)
            name, oneof, set_field = plan
            if name in seen or (oneof and oneof in seen):
                raise _Fallback(key)
            seen.add(name)
            if oneof:
                seen.add(oneof)
            set_field(msg, item)

    return read


def _setter(field: descriptor.FieldDescriptor) -> Callable[[message.Message, Any], None]:
    """What sets `field` of a message from its JSON value (canonical forms only)."""
    name = field.name
    if field.type == FD.TYPE_MESSAGE:
        sub = field.message_type
        assert sub is not None, "a message field has its type"
        if sub.GetOptions().map_entry:
            return _refuse_field
        if field.is_repeated:

            def add_messages(msg: message.Message, value: Any) -> None:
                if type(value) is not list:
                    raise _Fallback(name)
                items = getattr(msg, name)
                read = _reader(sub)
                for item in value:
                    read(item, items.add())

            return add_messages

        def set_message(msg: message.Message, value: Any) -> None:
            child = getattr(msg, name)
            child.SetInParent()
            _reader(sub)(value, child)

        return set_message
    convert = _scalar_reader(field)
    if field.is_repeated:

        def add_scalars(msg: message.Message, value: Any) -> None:
            if type(value) is not list:
                raise _Fallback(name)
            getattr(msg, name).extend([convert(item) for item in value])

        return add_scalars

    def set_scalar(msg: message.Message, value: Any) -> None:
        setattr(msg, name, convert(value))

    return set_scalar


def _scalar_reader(field: descriptor.FieldDescriptor) -> Convert:
    """What turns a canonical JSON value of a scalar field into its Python value."""
    kind = field.type
    if kind in _INT64_TYPES or kind in _INT32_TYPES:
        return _read_int
    if kind == FD.TYPE_DOUBLE:
        return _read_double
    if kind == FD.TYPE_BOOL:
        return _read_bool
    if kind == FD.TYPE_STRING:
        return _read_string
    if kind == FD.TYPE_ENUM:
        assert field.enum_type is not None, "an enum field has its enum type"
        numbers = {v.name: v.number for v in field.enum_type.values}

        open_enum = not field.enum_type.is_closed

        def read_enum(value: Any) -> int:
            if type(value) is str and value in numbers:
                return numbers[value]
            if type(value) is int and open_enum:
                return value  # a number no name has is kept, as json_format does
            raise _Fallback(value)

        return read_enum
    if kind == FD.TYPE_BYTES:
        return _read_bytes
    # Floats and groups.
    return _refuse_value


def _read_int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str and _DIGITS.fullmatch(value):
        return int(value)
    raise _Fallback(value)


def _read_double(value: Any) -> float:
    if type(value) is float and math.isfinite(value):
        return value
    if type(value) is int:
        return float(value)
    raise _Fallback(value)


def _read_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _Fallback(value)
    return value


def _read_string(value: Any) -> str:
    if type(value) is not str or _SURROGATE.search(value):
        raise _Fallback(value)
    return value


def _read_bytes(value: Any) -> bytes:
    if type(value) is not str:
        raise _Fallback(value)
    # As json_format reads it: either base64 alphabet, padding optional.
    encoded = value.encode("utf-8")
    return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))


def _read_time(value: Any, msg: message.Message) -> None:
    if type(value) is not str:
        raise _Fallback(value)
    msg.FromJsonString(value)  # type: ignore[attr-defined]


def _refuse(value: Any, msg: message.Message) -> None:
    raise _Fallback(msg.DESCRIPTOR.full_name)


def _refuse_field(msg: message.Message, value: Any) -> None:
    raise _Fallback(msg.DESCRIPTOR.full_name)


def _refuse_value(value: Any) -> Any:
    raise _Fallback(value)
