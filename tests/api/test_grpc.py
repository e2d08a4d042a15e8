"""The same RPCs over gRPC and HTTP/JSON give the same answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message

from protos.api import auth_pb2, bots_pb2, server_pb2, tasks_pb2
from server.api.transcoder import to_json
from tests.api.conftest import Transports
from tests.botapi.scripted import ScriptedBot, task_body


async def test_same_answers_over_both_transports(both: Transports) -> None:
    """A task created over gRPC reads the same over gRPC and HTTP, and so do bots and details."""
    http, rpc = both.http, both.rpc
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


async def test_errors_map_to_grpc_status_codes(both: Transports) -> None:
    """A missing task is NOT_FOUND and an invalid request INVALID_ARGUMENT, with the message."""
    rpc = both.rpc
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


async def test_stdout_stream_follows_a_running_task_to_its_end(both: Transports) -> None:
    """Both the gRPC stream and the HTTP stream deliver all output, then the final state."""
    http, rpc = both.http, both.rpc
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


async def _same(
    both: Transports,
    rpc: tuple[str, str, message.Message, type[message.Message]],
    http: tuple[str, str, Any],
) -> Any:
    """Calls one RPC over gRPC and its HTTP route; asserts equal answers, returns the JSON."""
    over_grpc = to_json(await both.rpc.call(*rpc))
    status, over_http = await both.fetch(*http)
    assert status == 200, over_http
    assert over_grpc == over_http, f"{rpc[0]}.{rpc[1]} differs between transports"
    return over_http


async def test_every_kind_of_rpc_answers_the_same_over_both_transports(both: Transports) -> None:
    """Reads, results, listings, summaries, batch dry runs and whoami agree across transports."""
    bot = ScriptedBot(both.http)
    await bot.handshake()
    created = (await both.fetch("POST", "/api/v1/tasks", task_body(tags=["rev:7"])))[1]
    task_id = created["task_id"]
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"hello\n", 0)
    await both.fetch(
        "POST", f"/api/v1/tasks/{task_id}/results", {"unit": [{"name": "t", "result": "pass"}]}
    )
    both.clock.advance(1)  # newest first needs two creation times
    pending = (await both.fetch("POST", "/api/v1/tasks", task_body(tags=["rev:7"], wait=True)))[1]
    one = tasks_pb2.TaskIdRequest(task_id=task_id)
    selector = tasks_pb2.ListTasksRequest(tags=["rev:7"])
    t = f"/api/v1/tasks/{task_id}"
    await _same(
        both,
        ("Tasks", "GetRequest", one, tasks_pb2.TaskRequestResponse),
        ("GET", f"{t}/request", None),
    )
    stdout = await _same(
        both,
        (
            "Tasks",
            "GetStdout",
            tasks_pb2.TaskStdoutRequest(task_id=task_id),
            tasks_pb2.TaskStdoutResponse,
        ),
        ("GET", f"{t}/stdout", None),
    )
    assert base64.b64decode(stdout["output"]) == b"hello\n"
    await _same(
        both, ("Tasks", "GetResults", one, tasks_pb2.TaskResults), ("GET", f"{t}/results", None)
    )
    listing = await _same(
        both,
        ("Tasks", "ListTasks", selector, tasks_pb2.ListTasksResponse),
        ("GET", "/api/v1/tasks?tags=rev:7", None),
    )
    assert [i["task_id"] for i in listing["items"]] == [pending["task_id"], task_id]
    await _same(
        both,
        ("Tasks", "CountTasks", selector, tasks_pb2.CountTasksResponse),
        ("GET", "/api/v1/tasks:count?tags=rev:7", None),
    )
    await _same(
        both,
        ("Tasks", "SummarizeTasks", selector, tasks_pb2.TasksSummary),
        ("GET", "/api/v1/tasks:summary?tags=rev:7", None),
    )
    results = await _same(
        both,
        ("Tasks", "ListResults", selector, tasks_pb2.SelectorResults),
        ("GET", "/api/v1/tasks:results?tags=rev:7", None),
    )
    assert [r["task_id"] for r in results["items"]] == [pending["task_id"], task_id]
    await _same(
        both,
        (
            "Tasks",
            "GetPending",
            tasks_pb2.TaskIdRequest(task_id=pending["task_id"]),
            tasks_pb2.PendingResponse,
        ),
        ("GET", f"/api/v1/tasks/{pending['task_id']}/pending", None),
    )
    dry = await _same(
        both,
        (
            "Tasks",
            "PauseTasks",
            tasks_pb2.BatchRequest(tags=["rev:7"], dry_run=True),
            tasks_pb2.BatchResponse,
        ),
        ("POST", "/api/v1/tasks:pause", {"tags": ["rev:7"], "dry_run": True}),
    )
    assert dry["task_ids"] == [pending["task_id"], task_id]
    await _same(
        both,
        ("Bots", "GetBot", bots_pb2.BotRequest(bot_id="bot1"), bots_pb2.BotInfo),
        ("GET", "/api/v1/bots/bot1", None),
    )
    await _same(
        both,
        (
            "Bots",
            "ListBotEvents",
            bots_pb2.ListBotEventsRequest(bot_id="bot1"),
            bots_pb2.ListBotEventsResponse,
        ),
        ("GET", "/api/v1/bots/bot1/events", None),
    )
    me = await _same(
        both,
        ("Auth", "WhoAmI", auth_pb2.WhoAmIRequest(), auth_pb2.WhoAmIResponse),
        ("GET", "/api/v1/whoami", None),
    )
    assert me == {"identity": "anonymous", "roles": ["viewer", "scheduler", "admin"], "task_id": ""}
