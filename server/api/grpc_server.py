"""The client API over gRPC: the same servicer objects as HTTP/JSON, on their own port.

Handlers are built generically from the service descriptors (no generated
servicer base classes): each RPC deserializes its request message, calls the
servicer method with a transport-neutral CallContext, and maps domain errors
to gRPC status codes, as the HTTP transcoder maps them to HTTP statuses.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor, message

from server.api.transcoder import CallContext, message_class
from server.errors import DroverError

log = logging.getLogger("drover.grpc")

Servicers = Sequence[tuple[descriptor.ServiceDescriptor, object]]


@dataclasses.dataclass
class GrpcEndpoint:
    """Where the gRPC server listens once started (0 until then, or when off)."""

    port: int = 0


def _handler(
    impl: Callable[[Any, CallContext], Awaitable[message.Message]],
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[message.Message]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> message.Message:
        try:
            return await impl(request, _context(context))
        except DroverError as e:
            if e.status >= 500:
                log.exception("error serving a gRPC call")
            await context.abort(getattr(grpc.StatusCode, e.grpc_code), str(e))
            raise  # abort raises; this keeps type checkers content

    return call


def _stream_handler(
    impl: Callable[[Any, CallContext], AsyncIterator[message.Message]],
) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[message.Message]]:
    async def call(
        request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[message.Message]:
        try:
            async for reply in impl(request, _context(context)):
                yield reply
        except DroverError as e:
            await context.abort(getattr(grpc.StatusCode, e.grpc_code), str(e))

    return call


def _context(context: grpc.aio.ServicerContext) -> CallContext:
    headers = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    return CallContext(peer=_peer_ip(context.peer()), headers=headers)


def _peer_ip(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` or `ipv6:[::1]:5000` → the address alone."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return ""


def generic_handlers(servicers: Servicers) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service, routing every method to its servicer."""
    handlers = []
    for service, servicer in servicers:
        methods = {}
        for method in service.methods:
            request_cls = message_class(method.input_type)
            response_cls = message_class(method.output_type)
            impl = getattr(servicer, method.name)
            if method.server_streaming:
                methods[method.name] = grpc.unary_stream_rpc_method_handler(
                    _stream_handler(impl),
                    request_deserializer=request_cls.FromString,
                    response_serializer=response_cls.SerializeToString,
                )
                continue
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                _handler(impl),
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        handlers.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return handlers


async def start(servicers: Servicers, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Starts a gRPC server for `servicers`; returns it and the port it listens on."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(generic_handlers(servicers))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
