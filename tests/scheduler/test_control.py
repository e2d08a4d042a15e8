"""Live control of tasks: capacity, pause and resume, restart, reprioritize, retry,
children, admin quarantine and maintenance."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.clock import FakeClock
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory


async def _post(client: TestClient, path: str, body: Any = None) -> Any:  # type: ignore[type-arg]
    resp = await client.post(path, json=body or {})
    return resp.status, await resp.json()


async def _state(client: TestClient, task_id: str) -> dict[str, Any]:  # type: ignore[type-arg]
    data: dict[str, Any] = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
    return data


async def _new(client: TestClient, **extra: Any) -> str:  # type: ignore[type-arg]
    status, body = await _post(client, "/api/v1/tasks", task_body(**extra))
    assert status == 200, body
    task_id: str = body["task_id"]
    return task_id


async def test_no_live_bot_means_no_resource(make_server: ServerFactory, clock: FakeClock) -> None:
    """Without a live matching bot a task is NO_RESOURCE at once, unless it waits for capacity."""
    client = await make_server()
    assert (await _state(client, await _new(client)))["state"] == "NO_RESOURCE"
    assert (await _state(client, await _new(client, wait=True)))["state"] == "PENDING"
    bot = ScriptedBot(client)
    await bot.handshake()
    assert (await _state(client, await _new(client)))["state"] == "PENDING"
    clock.advance(601)
    assert (await _state(client, await _new(client)))["state"] == "NO_RESOURCE"


async def test_paused_pending_task_is_not_handed_out(make_server: ServerFactory) -> None:
    """A paused pending task stays queued but no bot gets it until it is resumed."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    task_id = await _new(client)
    status, paused = await _post(client, f"/api/v1/tasks/{task_id}:pause")
    assert status == 200
    assert paused["changed"] is True
    assert paused["task_result"]["paused"] is True
    assert (await bot.poll())["cmd"] == "sleep"
    _, resumed = await _post(client, f"/api/v1/tasks/{task_id}:resume")
    assert resumed["changed"] is True
    run = await bot.poll()
    assert run["cmd"] == "run"


async def test_paused_running_task_tells_the_bot(make_server: ServerFactory) -> None:
    """Pausing a running task makes task_update answer paused; resuming clears it."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    task_id = await _new(client)
    run_id = (await bot.poll())["manifest"]["task_id"]
    assert (await bot.update(run_id, b"a", 0))["paused"] is False
    await _post(client, f"/api/v1/tasks/{task_id}:pause")
    answer = await bot.update(run_id, b"b", 1)
    assert answer["paused"] is True
    assert answer["must_stop"] is False
    await _post(client, f"/api/v1/tasks/{task_id}:resume")
    assert (await bot.update(run_id, b"c", 2))["paused"] is False


async def test_a_task_that_ends_while_paused_is_not_shown_paused(
    make_server: ServerFactory,
) -> None:
    """A paused running task that completes, and a paused pending one that is cancelled,
    read back with `paused: false`."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    running = await _new(client)
    run_id = (await bot.poll())["manifest"]["task_id"]
    await _post(client, f"/api/v1/tasks/{running}:pause")
    assert (await bot.update(run_id, b"a", 0))["paused"] is True
    await bot.update(run_id, exit_code=0, duration=1.0)
    pending = await _new(client)
    await _post(client, f"/api/v1/tasks/{pending}:pause")
    await _post(client, f"/api/v1/tasks/{pending}:cancel", {})
    for task_id, state in ((running, "COMPLETED"), (pending, "CANCELED")):
        result = await _state(client, task_id)
        assert (result["state"], result["paused"]) == (state, False)


async def test_restart_kills_the_run_and_queues_a_new_try(make_server: ServerFactory) -> None:
    """Restart stops the current run; once it ends the task runs again as try 2."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    task_id = await _new(client)
    run1 = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run1, b"first", 0)
    status, restarted = await _post(client, f"/api/v1/tasks/{task_id}:restart")
    assert status == 200
    assert restarted["changed"] is True
    stop = await bot.update(run1, b"!", 5)
    assert stop["must_stop"] is True
    await bot.update(run1, exit_code=-15, duration=1.0)
    assert (await _state(client, task_id))["state"] == "PENDING"
    run2 = (await bot.poll())["manifest"]["task_id"]
    assert run2 == task_id[:-1] + "2"
    await bot.update(run2, b"second", 0, exit_code=0, duration=1.0)
    result = await _state(client, task_id)
    assert result["state"] == "COMPLETED"
    assert result["try_number"] == 2
    assert await (await client.get(f"/api/v1/tasks/{task_id}/log")).read() == b"second"


async def test_restart_of_a_finished_task_is_refused(make_server: ServerFactory) -> None:
    """A finished task cannot be restarted (retry makes a new task instead)."""
    client = await make_server()
    task_id = await _new(client)
    status, body = await _post(client, f"/api/v1/tasks/{task_id}:restart")
    assert status == 409
    assert ":retry" in body["error"]["message"]


async def test_reprioritize_changes_who_goes_first(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """Raising a pending task's priority makes it the next one handed out."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    first = await _new(client)
    clock.advance(1)
    second = await _new(client)
    _, body = await _post(client, f"/api/v1/tasks/{second}:reprioritize", {"priority": 10})
    assert body["task_result"]["priority"] == 10
    run = await bot.poll()
    assert run["manifest"]["task_id"] == second[:-1] + "1"
    status, _ = await _post(client, f"/api/v1/tasks/{second}:reprioritize", {"priority": 5})
    assert status == 409
    bad, _ = await _post(client, f"/api/v1/tasks/{first}:reprioritize", {"priority": 999})
    assert bad == 400


async def test_retry_makes_a_new_task_from_a_finished_one(make_server: ServerFactory) -> None:
    """Retry of a finished task creates a new task with the same request that names its source."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    task_id = await _new(client, tags=["build:7"])
    status, _ = await _post(client, f"/api/v1/tasks/{task_id}:retry")
    assert status == 409
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, exit_code=1, duration=1.0)
    status, body = await _post(client, f"/api/v1/tasks/{task_id}:retry")
    assert status == 200
    new_id = body["task_id"]
    assert new_id != task_id
    assert body["task_result"]["retry_of"] == task_id
    assert body["task_result"]["state"] == "PENDING"
    assert f"retry_of:{task_id}" in body["request"]["tags"]
    assert "build:7" in body["request"]["tags"]


async def test_cancelling_a_parent_cancels_its_children(make_server: ServerFactory) -> None:
    """Children of a cancelled parent are cancelled too, running ones asked to stop."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    parent = await _new(client)
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"p", 0)
    child = await _new(client, parent_task_id=parent)
    grandchild = await _new(client, parent_task_id=child)
    await _post(client, f"/api/v1/tasks/{parent}:cancel", {"kill_running": True})
    assert (await _state(client, child))["state"] == "CANCELED"
    assert (await _state(client, grandchild))["state"] == "CANCELED"
    assert (await bot.update(run_id, b"q", 1))["must_stop"] is True
    orphan = task_body(parent_task_id="ffffffffffffff0")
    status, _ = await _post(client, "/api/v1/tasks", orphan)
    assert status == 404


async def test_admin_quarantine_and_maintenance_stop_new_work(make_server: ServerFactory) -> None:
    """A bot quarantined or in maintenance by an admin sleeps and says why, until cleared."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    status, info = await _post(client, "/api/v1/bots/bot1:quarantine", {"message": "flaky disk"})
    assert status == 200
    assert info["quarantined"] is True
    assert info["quarantine_message"] == "flaky disk"
    await _new(client, wait=True)
    answer = await bot.poll()
    assert answer["cmd"] == "sleep"
    assert answer["quarantined"] is True
    assert answer["message"] == "quarantined: flaky disk"
    await bot.handshake()
    assert (await bot.poll())["cmd"] == "sleep"
    await _post(client, "/api/v1/bots/bot1:unquarantine")
    await _post(client, "/api/v1/bots/bot1:maintenance", {"message": "os upgrade"})
    info = await (await client.get("/api/v1/bots/bot1")).json()
    assert info["maintenance_msg"] == "os upgrade"
    assert info["quarantined"] is False
    answer = await bot.poll()
    assert (answer["cmd"], answer["quarantined"]) == ("sleep", False)
    assert answer["message"] == "in maintenance: os upgrade"
    await _post(client, "/api/v1/bots/bot1:maintenance", {"message": ""})
    assert (await bot.poll())["cmd"] == "run"


async def test_idempotent_task_reuses_a_recent_success(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """A second idempotent task with the same properties completes at once from the first."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    body = task_body(["build", "it"])
    body["task_slices"][0]["properties"]["idempotent"] = True
    first = (await (await client.post("/api/v1/tasks", json=body)).json())["task_id"]
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"built\n", 0, exit_code=0, duration=2.0)
    clock.advance(10)
    second = await (await client.post("/api/v1/tasks", json=body)).json()
    result = second["task_result"]
    assert result["state"] == "COMPLETED"
    assert result["deduped_from"] == first
    assert result["try_number"] == 0
    log = await client.get(f"/api/v1/tasks/{second['task_id']}/log")
    assert await log.read() == b"built\n"
    assert (await bot.poll())["cmd"] == "sleep"
    clock.advance(7 * 24 * 3600)
    await bot.handshake()
    third = await (await client.post("/api/v1/tasks", json=body)).json()
    assert third["task_result"]["state"] == "PENDING"
