"""Deadlines: expiry and slice fallback, released reservations, bot death and retries."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.appkeys import SWEEPER
from server.clock import FakeClock
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of


async def _sweep(client: TestClient) -> int:  # type: ignore[type-arg]
    changed: int = await app_of(client)[SWEEPER].run_once()
    return changed


async def _result(client: TestClient, task_id: str) -> dict[str, Any]:  # type: ignore[type-arg]
    data: dict[str, Any] = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
    return data


async def test_pending_task_expires_at_its_deadline(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """A task nobody picks up is EXPIRED once its expiration passes, not a moment before."""
    client = await make_server()
    task_id = (await (await client.post("/api/v1/tasks", json=task_body(wait=True))).json())[
        "task_id"
    ]
    clock.advance(599.9)
    assert await _sweep(client) == 0
    assert (await _result(client, task_id))["state"] == "PENDING"
    clock.advance(0.1)
    assert await _sweep(client) == 1
    assert (await _result(client, task_id))["state"] == "EXPIRED"


async def test_expired_slice_falls_back_to_the_next(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """When slice 0 expires, the task waits on slice 1, which a different bot can run."""
    client = await make_server()
    body = task_body()
    mac = {
        "expiration_secs": 300,
        "wait_for_capacity": True,
        "properties": {
            "command": ["mac-only"],
            "dimensions": [{"key": "pool", "value": "default"}, {"key": "os", "value": "Mac"}],
        },
    }
    linux = body["task_slices"][0]
    body["task_slices"] = [mac, linux]
    task_id = (await (await client.post("/api/v1/tasks", json=body)).json())["task_id"]
    bot = ScriptedBot(client)
    await bot.handshake()
    assert (await bot.poll())["cmd"] == "sleep"
    clock.advance(300)
    await _sweep(client)
    result = await _result(client, task_id)
    assert result["current_task_slice"] == 1
    run = await bot.poll()
    assert run["cmd"] == "run"
    assert run["manifest"]["command"] == ["echo", "hi"]
    await bot.update(run["manifest"]["task_id"], b"out")
    clock.advance(600)
    await _sweep(client)
    assert (await _result(client, task_id))["state"] == "RUNNING"


async def test_unconfirmed_reservation_goes_back_to_the_queue(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """An unconfirmed run is released after the reservation timeout; another bot gets it."""
    client = await make_server()
    task_id = (await (await client.post("/api/v1/tasks", json=task_body(wait=True))).json())[
        "task_id"
    ]
    lost = ScriptedBot(client, bot_id="lost")
    await lost.handshake()
    first = await lost.poll()
    assert first["manifest"]["task_id"] == task_id[:-1] + "1"
    clock.advance(301)
    assert await _sweep(client) == 1
    assert (await _result(client, task_id))["state"] == "PENDING"
    other = ScriptedBot(client, bot_id="other", version=lost.version)
    await other.handshake()
    second = await other.poll()
    assert second["manifest"]["task_id"] == task_id[:-1] + "1"
    late = await lost.update(first["manifest"]["task_id"], b"late")
    assert late["must_stop"] is True


async def test_silent_run_ends_bot_died(make_server: ServerFactory, clock: FakeClock) -> None:
    """A run without updates for bot_ping_tolerance_secs ends BOT_DIED; late writes are refused."""
    client = await make_server()
    body = task_body(bot_ping_tolerance_secs=60, wait=True)
    task_id = (await (await client.post("/api/v1/tasks", json=body)).json())["task_id"]
    bot = ScriptedBot(client)
    await bot.handshake()
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"started\n", 0)
    clock.advance(59)
    assert await _sweep(client) == 0
    clock.advance(2)
    assert await _sweep(client) == 1
    result = await _result(client, task_id)
    assert result["state"] == "BOT_DIED"
    assert result["internal_failure"] is True
    late = await bot.update(run_id, b"zombie\n", 8, exit_code=0, duration=1.0)
    assert late["must_stop"] is True
    assert (await _result(client, task_id))["state"] == "BOT_DIED"


async def test_dead_run_is_retried_as_a_new_try(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """With max_retries, a dead run is queued again and completes on another bot as try 2."""
    client = await make_server()
    body = task_body(bot_ping_tolerance_secs=60, max_retries=1, wait=True)
    task_id = (await (await client.post("/api/v1/tasks", json=body)).json())["task_id"]
    first = ScriptedBot(client, bot_id="first")
    await first.handshake()
    run1 = (await first.poll())["manifest"]["task_id"]
    await first.update(run1, b"one\n", 0)
    clock.advance(61)
    await _sweep(client)
    assert (await _result(client, task_id))["state"] == "PENDING"
    second = ScriptedBot(client, bot_id="second", version=first.version)
    await second.handshake()
    run2 = (await second.poll())["manifest"]["task_id"]
    assert run2 == task_id[:-1] + "2"
    assert (await first.update(run1, b"late\n", 4))["must_stop"] is True
    await second.update(run2, b"two\n", 0, exit_code=0, duration=1.0)
    result = await _result(client, task_id)
    assert result["state"] == "COMPLETED"
    assert result["try_number"] == 2
    assert result["bot_id"] == "second"
    assert await (await client.get(f"/api/v1/tasks/{task_id}/log")).read() == b"two\n"
