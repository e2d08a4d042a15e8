"""Fixtures of the client API tests: one server reached over both transports.

`Transports` calls the same server over HTTP/JSON and over gRPC, each with
an optional bearer token, so a test can compare what the two answer.
`start_both` starts such a server after writing the configs a test wants.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient
from google.protobuf import message

from server.appkeys import GRPC, STORE
from server.auth.tokens import ApiTokenService
from server.clock import FakeClock
from tests.conftest import ServerFactory, app_of

# HTTP statuses and the gRPC codes the same refusal has.
GRPC_CODE = {
    200: grpc.StatusCode.OK,
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
}


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """(status code, details) of a unary RPC: OK and "" when it succeeds."""
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


class GrpcClient:
    """Calls RPCs by name over a gRPC channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    async def call(
        self,
        service: str,
        method: str,
        request: message.Message,
        reply: type[message.Message],
        token: str = "",
    ) -> Any:
        """The answer of a unary RPC; raises grpc.aio.AioRpcError for a refusal."""
        rpc = self.channel.unary_unary(
            f"/drover.api.v1.{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply.FromString,
        )
        return await rpc(request, timeout=10, metadata=_metadata(token))


class Transports:
    """One server over HTTP/JSON (`http`, aiohttp's test client) and gRPC (`rpc`)."""

    def __init__(self, http: TestClient, rpc: GrpcClient, clock: FakeClock) -> None:  # type: ignore[type-arg]
        self.http = http
        self.rpc = rpc
        self.clock = clock

    async def fetch(
        self, method: str, path: str, body: Any = None, token: str = ""
    ) -> tuple[int, Any]:
        """(status, decoded JSON) of an HTTP/JSON call."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await self.http.request(method, path, json=body, headers=headers)
        return resp.status, await resp.json()

    async def token(self, name: str, role: str, expires_in_secs: int = 0) -> str:
        """A new API token, made as `drover token create --state-dir` does."""
        tokens = ApiTokenService(app_of(self.http)[STORE], self.clock)
        token, _ = await tokens.create(
            name, role, created_by="local", expires_in_secs=expires_in_secs
        )
        return token


StartBoth = Callable[..., Awaitable[Transports]]


@pytest.fixture
async def start_both(
    make_server: ServerFactory, config_dir: pathlib.Path, clock: FakeClock
) -> AsyncIterator[StartBoth]:
    """Starts a server with both transports after writing the given config files."""
    channels: list[grpc.aio.Channel] = []

    async def start(**files: str) -> Transports:
        for name, text in files.items():
            (config_dir / f"{name}.cfg").write_text(text)
        http = await make_server(grpc=True)
        port = app_of(http)[GRPC].port
        assert port, "the gRPC server listens"
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return Transports(http, GrpcClient(channel), clock)

    yield start
    for channel in channels:
        await channel.close()


@pytest.fixture
async def both(start_both: StartBoth) -> Transports:
    """A server with both transports, open to callers without a token (tests/conftest.py)."""
    return await start_both()
