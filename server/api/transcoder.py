"""HTTP/JSON transcoding of the client API, built from `google.api.http` annotations.

One generic handler per annotated RPC: path variables and (for GET) query
parameters fill the request message, a `body: "*"` rule reads the JSON body
with the proto3 JSON mapping (either field spelling), and the answer is the
response message as JSON with proto field names and default values shown.
An RPC answering `google.api.HttpBody` returns its bytes with its content type.
No route is written by hand.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from google.api import annotations_pb2, http_pb2, httpbody_pb2
from google.protobuf import descriptor, json_format, message, message_factory, timestamp_pb2

from server import jsonio
from server.api import protojson
from server.auth.principal import ANONYMOUS, Principal
from server.errors import InvalidRequest, PermissionDenied

_VAR_RE = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=[^}]*)?\}")


# The principal of a call no guard authorized: anonymous, holding no role.
NOBODY = Principal(identity=ANONYMOUS)


async def refuse_all(task_id: str) -> None:
    """The `admit` of a call no guard authorized: nothing may be changed."""
    raise PermissionDenied(f"this call was not authorized to change task {task_id}")


@dataclasses.dataclass(frozen=True)
class CallContext:
    """Who is calling: the transport-independent view servicers get.

    The transports fill `peer` and `headers`; the guard (server/api/guard.py)
    adds the authorized `principal` and `admit`, which raises unless the
    caller may change a given task (batch operations check each task with it).
    """

    peer: str
    headers: Mapping[str, str]
    principal: Principal = NOBODY
    admit: Callable[[str], Awaitable[None]] = dataclasses.field(default=refuse_all)


Method = Callable[[Any, CallContext], Awaitable[message.Message]]


def http_rule(method: descriptor.MethodDescriptor) -> tuple[str, str, str] | None:
    """Returns (HTTP verb, path template, body) of an annotated method."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    if verb is None or verb == "custom":
        return None
    return verb.upper(), getattr(rule, verb), rule.body


def aiohttp_path(template: str) -> str:
    """Turns `/a/{x}:verb` into an aiohttp path whose variables stop at '/' and ':'."""
    return _VAR_RE.sub(lambda m: "{" + m.group(1) + ":[^/:]+}", template)


def routes(service: descriptor.ServiceDescriptor, servicer: object) -> list[web.RouteDef]:
    """Builds one route per annotated method of `service`, served by `servicer`."""
    out = []
    for method in service.methods:
        rule = http_rule(method)
        if rule is None:
            continue
        verb, template, body = rule
        impl: Method = getattr(servicer, method.name)
        handler = _handler(method, impl, body)
        out.append(web.route(verb, aiohttp_path(template), handler))
    return out


def message_class(desc: descriptor.Descriptor) -> type[message.Message]:
    """The generated class of a message descriptor."""
    cls: type[message.Message] = message_factory.GetMessageClass(desc)
    return cls


def _handler(
    method: descriptor.MethodDescriptor, impl: Method, body: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    request_cls = message_class(method.input_type)

    async def handle(request: web.Request) -> web.StreamResponse:
        msg = request_cls()
        if body == "*" and request.can_read_body:
            _parse_json_body(await request.read(), msg)
        elif not body:
            _fill_from_query(msg, request.query)
        for name, value in request.match_info.items():
            _set_field(msg, name, [value])
        ctx = CallContext(peer=request.remote or "", headers=request.headers)
        if method.server_streaming:
            return await _stream(request, impl(msg, ctx))  # type: ignore[arg-type]
        reply = await impl(msg, ctx)
        if isinstance(reply, httpbody_pb2.HttpBody):
            mimetype, _, params = (reply.content_type or "application/octet-stream").partition(";")
            charset = params.strip().removeprefix("charset=") or None
            return web.Response(body=reply.data, content_type=mimetype.strip(), charset=charset)
        return web.Response(
            text=jsonio.dumps(to_json(reply)),
            content_type="application/json",
        )

    return handle


async def _stream(
    request: web.Request, replies: AsyncIterator[message.Message]
) -> web.StreamResponse:
    """Writes a server-streaming RPC's messages as they come, chunked.

    Newline-delimited JSON by default; server-sent events when the client
    accepts text/event-stream. The first message is read before the headers
    go out, so an error in it is still an ordinary JSON error response.
    """
    sse = "text/event-stream" in request.headers.get("Accept", "")
    first = await anext(replies, None)
    response = web.StreamResponse()
    response.content_type = "text/event-stream" if sse else "application/x-ndjson"
    await response.prepare(request)
    reply = first
    while reply is not None:
        text = jsonio.dumps(to_json(reply))
        await response.write(f"data: {text}\n\n".encode() if sse else f"{text}\n".encode())
        reply = await anext(replies, None)
    await response.write_eof()
    return response


def to_json(msg: message.Message) -> dict[str, Any]:
    """The proto3 JSON mapping with proto field names and defaults shown (DESIGN.md 4.2)."""
    return protojson.to_json(msg)


def _parse_json_body(raw: bytes, msg: message.Message) -> None:
    name = msg.DESCRIPTOR.name
    try:
        # orjson reads the text (jsonio); protobuf only maps the values.
        value = jsonio.loads(raw or b"{}")
    except ValueError as e:
        raise InvalidRequest(f"the body is not JSON text: {e}") from e
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"the body must be a JSON object holding the fields of {name},"
            f" not {type(value).__name__}"
        )
    try:
        protojson.parse(value, msg)
    except json_format.ParseError as e:
        raise InvalidRequest(f"the body does not fit {name}: {e}") from e


def _fill_from_query(msg: message.Message, query: Mapping[str, str]) -> None:
    for name in set(query):
        values = query.getall(name) if hasattr(query, "getall") else [query[name]]
        _set_field(msg, name, list(values))


def _set_field(msg: message.Message, name: str, values: list[str]) -> None:
    """Sets a scalar or repeated field from strings, with 400s that name the field."""
    field: descriptor.FieldDescriptor | None = msg.DESCRIPTOR.fields_by_name.get(name)  # type: ignore[assignment]
    if field is None:
        raise InvalidRequest(f"unknown parameter {name!r}")
    if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
        kind = field.message_type.full_name if field.message_type else ""
        if kind != "google.protobuf.Timestamp" or len(values) != 1:
            raise InvalidRequest(f"parameter {name!r} cannot be given in the query")
        _set_timestamp(getattr(msg, name), name, values[0])
        return
    converted = [_convert(field, v) for v in values]
    if field.is_repeated:
        getattr(msg, name).extend(converted)
    else:
        if len(converted) != 1:
            raise InvalidRequest(f"parameter {name!r} takes one value")
        setattr(msg, name, converted[0])


def _set_timestamp(ts: timestamp_pb2.Timestamp, name: str, value: str) -> None:
    """A time in the query: RFC 3339 ("2026-11-22T08:00:00Z") or seconds since the epoch."""
    try:
        ts.FromNanoseconds(int(float(value) * 1e9))
        return
    except ValueError:
        pass
    try:
        ts.FromJsonString(value)
    except ValueError as e:
        raise InvalidRequest(
            f"parameter {name!r}: {value!r} is neither RFC 3339 nor seconds since the epoch"
        ) from e


def _convert(field: descriptor.FieldDescriptor, value: str) -> Any:
    kind = field.type
    fd = descriptor.FieldDescriptor
    try:
        if kind in (fd.TYPE_STRING,):
            return value
        if kind == fd.TYPE_BOOL:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind == fd.TYPE_ENUM:
            assert field.enum_type is not None, "an enum field has its enum type"
            enum_value = field.enum_type.values_by_name.get(value.upper())
            if enum_value is None:
                names = ", ".join(v.name for v in field.enum_type.values)
                raise InvalidRequest(f"parameter {field.name!r}: {value!r} is not one of {names}")
            return enum_value.number
        if kind in (fd.TYPE_DOUBLE, fd.TYPE_FLOAT):
            return float(value)
        if kind == fd.TYPE_BYTES:
            return value.encode()
        return int(value)
    except ValueError as e:
        raise InvalidRequest(f"parameter {field.name!r}: {value!r} is not a valid value") from e
