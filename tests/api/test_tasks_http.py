"""The Tasks and Bots services over HTTP/JSON."""

from __future__ import annotations

from typing import Any

import pytest

from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory


def _props(body: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = body["task_slices"][0]["properties"]
    return props


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(name=""), "name"),
        (lambda b: b.update(priority=300), "priority"),
        (lambda b: b.update(task_slices=[]), "task_slices"),
        (lambda b: _props(b).update(command=[]), "command"),
        (lambda b: _props(b).update(dimensions=[]), "pool"),
        (lambda b: _props(b).update(dimensions=[{"key": "pool", "value": "a|b"}]), "pool"),
        (lambda b: _props(b)["dimensions"].append({"key": "bad key", "value": "x"}), "bad key"),
        (lambda b: _props(b).update(env=[{"key": "1X", "value": "y"}]), "env"),
        (lambda b: _props(b).update(relative_cwd="../up"), "relative_cwd"),
        (lambda b: _props(b).update(execution_timeout_secs=-1), "execution_timeout_secs"),
        (lambda b: b["task_slices"][0].update(expiration_secs=10**9), "expiration_secs"),
        (lambda b: b.update(tags=["nocolon"]), "tags"),
        (lambda b: b.update(service_account="root"), "service_account"),
        (lambda b: b.update(bogus_field=1), "bogus_field"),
        (lambda b: b.update(priority="high"), "priority"),
    ],
)
async def test_invalid_new_task_is_400_naming_the_field(
    make_server: ServerFactory, mutate: Any, field: str
) -> None:
    """Each invalid field is refused with a message that names it, and no task is stored."""
    client = await make_server()
    body = task_body()
    mutate(body)
    resp = await client.post("/api/v1/tasks", json=body)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert field in error["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{bad", "the body is not JSON text"),
        (b"\xff\xfe{}", "the body is not JSON text"),
        (b"[1, 2]", "must be a JSON object holding the fields of NewTaskRequest, not list"),
        (b'"x"', "must be a JSON object holding the fields of NewTaskRequest, not str"),
    ],
    ids=["truncated", "not utf-8", "list", "string"],
)
async def test_malformed_new_task_body_is_400_saying_so(
    make_server: ServerFactory, body: bytes, says: str
) -> None:
    """A body that is not a JSON object is refused with a message that says so."""
    client = await make_server()
    resp = await client.post(
        "/api/v1/tasks", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert says in error["message"]
    listed = await (await client.get("/api/v1/tasks")).json()
    assert listed["items"] == []


async def test_new_task_round_trips_its_request(make_server: ServerFactory) -> None:
    """The stored request shows what was submitted, with defaults applied."""
    client = await make_server()
    body = task_body(["run", "it"], tags=["b:2", "a:1"], user="ci", wait=True)
    _props(body)["env"] = [{"key": "FOO", "value": "bar"}]
    _props(body)["dimensions"].append({"key": "os", "value": "Mac|Linux"})
    created = await (await client.post("/api/v1/tasks", json=body)).json()
    task_id = created["task_id"]
    assert created["task_result"]["state"] == "PENDING"
    request = await (await client.get(f"/api/v1/tasks/{task_id}/request")).json()
    props = request["task_slices"][0]["properties"]
    assert props["command"] == ["run", "it"]
    assert props["env"] == [{"key": "FOO", "value": "bar"}]
    assert {"key": "os", "value": "Linux|Mac"} in props["dimensions"]
    assert props["grace_period_secs"] == "30"
    assert request["priority"] == 200
    assert request["user"] == "ci"
    result = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert result["tags"] == ["a:1", "b:2", "pool:default"]


async def test_request_uuid_makes_creation_idempotent(make_server: ServerFactory) -> None:
    """Submitting the same request_uuid twice returns the first task."""
    client = await make_server()
    body = task_body(request_uuid="u-1", wait=True)
    first = await (await client.post("/api/v1/tasks", json=body)).json()
    again = await (await client.post("/api/v1/tasks", json=body)).json()
    assert first["task_id"] == again["task_id"]


async def test_unknown_task_is_a_json_404(make_server: ServerFactory) -> None:
    """Reading a task that does not exist answers 404 with a JSON error."""
    client = await make_server()
    for path in ("/api/v1/tasks/5f0000000000000", "/api/v1/tasks/not-an-id/request"):
        resp = await client.get(path)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "NOT_FOUND"


async def test_cancel_pending_task_is_immediate(make_server: ServerFactory) -> None:
    """A pending task is CANCELED at once and no bot gets it."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    task_id = (await (await client.post("/api/v1/tasks", json=task_body())).json())["task_id"]
    answer = await (await client.post(f"/api/v1/tasks/{task_id}:cancel", json={})).json()
    assert answer == {"canceled": True, "was_running": False}
    result = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert result["state"] == "CANCELED"
    assert (await bot.poll())["cmd"] == "sleep"
    again = await (await client.post(f"/api/v1/tasks/{task_id}:cancel", json={})).json()
    assert again["canceled"] is False


async def test_list_bots_filters(make_server: ServerFactory) -> None:
    """Bots can be listed by dimension and by busy state."""
    client = await make_server()
    idle = ScriptedBot(client, bot_id="idle1")
    await idle.handshake()
    await idle.poll()
    busy = ScriptedBot(client, bot_id="busy1", version=idle.version)
    busy.dimensions["os"] = ["Mac"]
    await busy.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    assert (await busy.poll())["cmd"] == "run"

    async def ids(query: str) -> list[str]:
        page = await (await client.get(f"/api/v1/bots{query}")).json()
        return [b["bot_id"] for b in page["items"]]

    assert await ids("") == ["busy1", "idle1"]
    assert await ids("?dimensions=os:Mac") == ["busy1"]
    assert await ids("?is_busy=TRUE") == ["busy1"]
    assert await ids("?is_busy=FALSE") == ["idle1"]
    bad = await client.get("/api/v1/bots?is_busy=maybe")
    assert bad.status == 400
    assert "is_busy" in (await bad.json())["error"]["message"]
    one = await (await client.get("/api/v1/bots/busy1")).json()
    assert one["task_id"]
    assert one["is_dead"] is False
