"""The same RPCs over gRPC and HTTP/JSON give the same answers."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient
from google.protobuf import json_format, message

from protos.api import bots_pb2, server_pb2, tasks_pb2
from server.api.transcoder import to_json
from server.appkeys import GRPC
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of


class GrpcClient:
    """Calls RPCs by name over a gRPC channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    async def call(
        self, service: str, method: str, request: message.Message, reply: type[message.Message]
    ) -> Any:
        rpc = self.channel.unary_unary(
            f"/drover.api.v1.{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply.FromString,
        )
        return await rpc(request, timeout=10)


@pytest.fixture
async def both(make_server: ServerFactory) -> AsyncIterator[tuple[TestClient, GrpcClient]]:  # type: ignore[type-arg]
    """A server with both transports, and a client for each."""
    client = await make_server(grpc=True)
    port = app_of(client)[GRPC].port
    assert port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield client, GrpcClient(channel)


async def test_same_answers_over_both_transports(
    both: tuple[TestClient, GrpcClient],  # type: ignore[type-arg]
) -> None:
    """A task created over gRPC reads the same over gRPC and HTTP, and so do bots and details."""
    http, rpc = both
    bot = ScriptedBot(http)
    await bot.handshake()
    body = task_body(["echo", "both"], tags=["via:grpc"])
    new = json_format.ParseDict(body, tasks_pb2.NewTaskRequest())
    created = await rpc.call("Tasks", "NewTask", new, tasks_pb2.TaskRequestMetadataResponse)
    task_id = created.task_id
    over_grpc = await rpc.call(
        "Tasks", "GetResult", tasks_pb2.TaskIdRequest(task_id=task_id), tasks_pb2.TaskResultResponse
    )
    over_http = await (await http.get(f"/api/v1/tasks/{task_id}")).json()
    assert to_json(over_grpc) == over_http
    assert over_http["tags"] == ["pool:default", "via:grpc"]

    bots = await rpc.call("Bots", "ListBots", bots_pb2.ListBotsRequest(), bots_pb2.ListBotsResponse)
    http_bots = await (await http.get("/api/v1/bots")).json()
    assert [b["bot_id"] for b in to_json(bots)["items"]] == [
        b["bot_id"] for b in http_bots["items"]
    ]
    details = await rpc.call(
        "Server", "GetDetails", server_pb2.ServerDetailsRequest(), server_pb2.ServerDetails
    )
    assert to_json(details) == await (await http.get("/api/v1/server")).json()

    canceled = await rpc.call(
        "Tasks",
        "CancelTask",
        tasks_pb2.TaskCancelRequest(task_id=task_id),
        tasks_pb2.CancelResponse,
    )
    assert canceled.canceled is True
    assert (await (await http.get(f"/api/v1/tasks/{task_id}")).json())["state"] == "CANCELED"


async def test_errors_map_to_grpc_status_codes(
    both: tuple[TestClient, GrpcClient],  # type: ignore[type-arg]
) -> None:
    """A missing task is NOT_FOUND and an invalid request INVALID_ARGUMENT, with the message."""
    _, rpc = both
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await rpc.call(
            "Tasks",
            "GetResult",
            tasks_pb2.TaskIdRequest(task_id="5f0000000000000"),
            tasks_pb2.TaskResultResponse,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await rpc.call(
            "Tasks",
            "NewTask",
            tasks_pb2.NewTaskRequest(name="x"),
            tasks_pb2.TaskRequestMetadataResponse,
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task_slices" in (invalid.value.details() or "")


async def test_stdout_stream_follows_a_running_task_to_its_end(
    both: tuple[TestClient, GrpcClient],  # type: ignore[type-arg]
) -> None:
    """Both the gRPC stream and the HTTP stream deliver all output, then the final state."""
    http, rpc = both
    bot = ScriptedBot(http)
    await bot.handshake()
    task_id = (await (await http.post("/api/v1/tasks", json=task_body())).json())["task_id"]
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"one\n", 0)
    stream = rpc.channel.unary_stream(
        "/drover.api.v1.Tasks/StreamStdout",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=tasks_pb2.TaskStdoutResponse.FromString,
    )
    call = stream(tasks_pb2.TaskStdoutRequest(task_id=task_id), timeout=20)
    first = await call.read()
    assert first.output == b"one\n"
    http_stream = await http.get(f"/api/v1/tasks/{task_id}/stdout:stream?offset=4")
    assert http_stream.content_type == "application/x-ndjson"
    await bot.update(run_id, b"two\n", 4)
    await bot.update(run_id, exit_code=0, duration=1.0)
    rest = []
    while (message_ := await call.read()) is not grpc.aio.EOF:
        rest.append(message_)
    assert b"".join(m.output for m in rest) == b"two\n"
    assert rest[-1].state == tasks_pb2.COMPLETED
    lines = [json.loads(line) for line in (await http_stream.text()).splitlines()]
    assert b"".join(base64.b64decode(m["output"]) for m in lines) == b"two\n"
    assert lines[-1]["state"] == "COMPLETED"
