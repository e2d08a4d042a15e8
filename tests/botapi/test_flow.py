"""A scripted bot runs a task end to end through the bot API and the client API."""

from __future__ import annotations

import base64

from server.clock import FakeClock
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory


async def test_scripted_bot_runs_a_task_end_to_end(make_server: ServerFactory) -> None:
    """handshake → sleep → task created → run → claim → chunked output (one resent) → COMPLETED."""
    client = await make_server()
    bot = ScriptedBot(client)
    hello = await bot.handshake()
    assert hello["bot_group_cfg"] == {"dimensions": {"pool": ["default"]}}
    assert hello["session"]

    first = await bot.poll()
    assert first["cmd"] == "sleep"
    assert isinstance(first["duration"], float)

    created = await client.post("/api/v1/tasks", json=task_body(["python3", "-c", "print(1)"]))
    assert created.status == 200, await created.text()
    task_id = (await created.json())["task_id"]
    assert task_id.endswith("0")

    run = await bot.poll()
    assert run["cmd"] == "run"
    manifest = run["manifest"]
    run_id = manifest["task_id"]
    assert run_id == task_id[:-1] + "1"
    for key in ("hard_timeout", "io_timeout", "grace_period", "dimensions", "bot_id"):
        assert key in manifest
    assert manifest["bot_dimensions"]["pool"] == ["default"]
    assert manifest["command"] == ["python3", "-c", "print(1)"]
    assert manifest["dimensions"] == {"pool": ["default"]}

    claimed = await bot.claim(run_id)
    assert claimed["cmd"] == "run"
    assert claimed["manifest"]["task_id"] == run_id

    output = bytes(range(256)) * 40 + b"end\n"
    chunks = [output[:4000], output[4000:9000], output[9000:]]
    offset = 0
    for chunk in chunks:
        answer = await bot.update(run_id, chunk, offset)
        assert answer == {"ok": True, "must_stop": False, "paused": False}
        if offset == 4000:
            resent = await bot.update(run_id, chunk, offset)
            assert resent["must_stop"] is False
        offset += len(chunk)
    final = await bot.update(run_id, exit_code=0, duration=1.5, bot_overhead=0.1)
    assert final["ok"] is True

    result = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert result["state"] == "COMPLETED"
    assert result["exit_code"] == "0"
    assert result["failure"] is False
    assert result["bot_id"] == "bot1"
    assert result["try_number"] == 1

    log = await client.get(f"/api/v1/tasks/{task_id}/log")
    assert log.content_type == "text/plain"
    assert await log.read() == output

    stdout = await (
        await client.get(f"/api/v1/tasks/{task_id}/stdout?offset=4000&length=10")
    ).json()
    assert base64.b64decode(stdout["output"]) == output[4000:4010]
    assert stdout["state"] == "COMPLETED"


async def test_repeated_final_update_is_accepted(make_server: ServerFactory) -> None:
    """A resent identical completion is answered with success, a different one with must_stop."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, exit_code=3, duration=1.0)
    again = await bot.update(run_id, exit_code=3, duration=1.0)
    assert again == {"ok": True, "must_stop": False}
    different = await bot.update(run_id, exit_code=4, duration=1.0)
    assert different["must_stop"] is True
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "COMPLETED"
    assert result["exit_code"] == "3"
    assert result["failure"] is True


async def test_retried_poll_replays_the_same_run(make_server: ServerFactory) -> None:
    """A poll resent with the same request_uuid gets the same run, and no second task."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    await client.post("/api/v1/tasks", json=task_body())
    first = await bot.poll(request_uuid="same-uuid")
    again = await bot.poll(request_uuid="same-uuid")
    assert first["cmd"] == again["cmd"] == "run"
    assert first["manifest"]["task_id"] == again["manifest"]["task_id"]
    other = await bot.poll(request_uuid="other-uuid")
    assert other["cmd"] == "run"
    assert other["manifest"]["task_id"] != first["manifest"]["task_id"]


async def test_priority_then_age_decides_which_task_a_bot_gets(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """The pending task with the lowest priority number goes first, then the oldest."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    ids = []
    for priority in (100, 50, 50):
        clock.advance(1)
        resp = await client.post("/api/v1/tasks", json=task_body(priority=priority))
        ids.append((await resp.json())["task_id"])
    got = []
    for _ in range(3):
        run = await bot.poll()
        run_id = run["manifest"]["task_id"]
        got.append(run_id[:-1] + "0")
        await bot.update(run_id, exit_code=0, duration=0.1)
    assert got == [ids[1], ids[2], ids[0]]


async def test_bot_gets_only_tasks_matching_its_dimensions(make_server: ServerFactory) -> None:
    """OR values match either alternative; a missing dimension means no task."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    body = task_body()
    body["task_slices"][0]["properties"]["dimensions"].append({"key": "os", "value": "Mac"})
    await client.post("/api/v1/tasks", json=body)
    assert (await bot.poll())["cmd"] == "sleep"
    body["task_slices"][0]["properties"]["dimensions"][1]["value"] = "Windows|Linux"
    await client.post("/api/v1/tasks", json=body)
    assert (await bot.poll())["cmd"] == "run"


async def test_terminate_waits_for_the_bot_and_completes_on_ack(
    make_server: ServerFactory,
) -> None:
    """Terminating a bot makes its next poll answer terminate; the ack completes the task."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    assert (await bot.poll())["cmd"] == "sleep"
    other = ScriptedBot(client, bot_id="bot2", version=bot.version)
    await other.handshake()
    resp = await client.post("/api/v1/bots/bot1:terminate", json={})
    assert resp.status == 200
    task_id = (await resp.json())["task_id"]
    assert (await (await client.get("/api/v1/bots/bot1")).json())["termination_requested"]
    assert (await other.poll())["cmd"] == "sleep"
    answer = await bot.poll()
    assert answer["cmd"] == "terminate"
    assert answer["task_id"] == task_id[:-1] + "1"
    await bot.update(answer["task_id"], exit_code=0, duration=0)
    result = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert result["state"] == "COMPLETED"
    missing = await client.post("/api/v1/bots/nobody:terminate", json={})
    assert missing.status == 404
