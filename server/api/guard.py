"""The one place client API calls are authorized, for both transports.

`guarded` wraps a servicer: each method first has `Access.authorize` check
the caller against its rule (server/auth/access.py), then runs with the
caller's Principal and an `admit` check in its CallContext. The HTTP/JSON
transcoder and the gRPC server are both handed the guarded object, so no
call reaches a servicer unchecked, whatever its transport.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from google.protobuf import descriptor, message

from server.api.transcoder import CallContext
from server.auth.access import Access

Unary = Callable[[Any, CallContext], Awaitable[message.Message]]
Streaming = Callable[[Any, CallContext], AsyncIterator[message.Message]]


def guarded(service: descriptor.ServiceDescriptor, servicer: object, access: Access) -> object:
    """`servicer` with every method of `service` behind `access`.

    Raises KeyError at startup when a method has no rule in `access.rules`
    (server/auth/access.py RULES), so a new RPC cannot be served before
    someone decides who may call it.
    """
    methods: dict[str, object] = {}
    for method in service.methods:
        rpc = f"{service.name}.{method.name}"
        if rpc not in access.rules:
            raise KeyError(f"{rpc} has no rule in server/auth/access.py RULES")
        impl = getattr(servicer, method.name)
        wrap = _streaming if method.server_streaming else _unary
        methods[method.name] = wrap(rpc, impl, access)
    return types.SimpleNamespace(**methods)


async def _authorized(rpc: str, request: Any, ctx: CallContext, access: Access) -> CallContext:
    principal = await access.authorize(rpc, request, ctx.headers)
    return dataclasses.replace(
        ctx, principal=principal, admit=functools.partial(access.admit, principal)
    )


def _unary(rpc: str, impl: Unary, access: Access) -> Unary:
    async def call(request: Any, ctx: CallContext) -> message.Message:
        return await impl(request, await _authorized(rpc, request, ctx, access))

    return call


def _streaming(rpc: str, impl: Streaming, access: Access) -> Streaming:
    async def call(request: Any, ctx: CallContext) -> AsyncIterator[message.Message]:
        # Checked before the first message, so a refusal is an ordinary error
        # response over HTTP and a status over gRPC.
        checked = await _authorized(rpc, request, ctx, access)
        async for reply in impl(request, checked):
            yield reply

    return call
