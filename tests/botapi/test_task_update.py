"""task_update fencing: refusals answer 200 must_stop and write nothing (PROTOCOL.md 0.2.1 T3)."""

from __future__ import annotations

from typing import Any

from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory


async def _running(make_server: ServerFactory) -> tuple[Any, ScriptedBot, str]:
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"mine\n", 0)
    return client, bot, run_id


async def test_update_from_another_bots_session_is_refused(make_server: ServerFactory) -> None:
    """Another bot cannot write output or complete a run that is not its own."""
    client, bot, run_id = await _running(make_server)
    other = ScriptedBot(client, bot_id="other", version=bot.version)
    await other.handshake()
    answer = await other.update(run_id, b"intruder\n", 5, exit_code=0, duration=1.0)
    assert answer["ok"] is False
    assert answer["must_stop"] is True
    assert answer["stop_reason"]
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "RUNNING"
    assert await (await client.get(f"/api/v1/tasks/{run_id}/log")).read() == b"mine\n"


async def test_update_with_stolen_session_body_id_is_refused(make_server: ServerFactory) -> None:
    """A body naming another bot than its session is refused."""
    client, bot, run_id = await _running(make_server)
    answer = await bot.call(
        f"task_update/{run_id}",
        {
            "id": "someone-else",
            "task_id": run_id,
            "session": bot.session,
            "exit_code": 0,
            "duration": 1.0,
        },
    )
    assert answer["must_stop"] is True
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "RUNNING"


async def test_update_for_a_run_that_is_not_current_is_refused(make_server: ServerFactory) -> None:
    """A write naming a later try than the current run changes nothing."""
    client, bot, run_id = await _running(make_server)
    stale = run_id[:-1] + "2"
    answer = await bot.update(stale, b"late\n", 0, exit_code=0, duration=1.0)
    assert answer["must_stop"] is True
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "RUNNING"
    assert await (await client.get(f"/api/v1/tasks/{run_id}/log")).read() == b"mine\n"


async def test_update_after_cancel_says_must_stop_then_ends_killed(
    make_server: ServerFactory,
) -> None:
    """Cancelling a running task makes the next update answer must_stop; the final ends KILLED."""
    client, bot, run_id = await _running(make_server)
    resp = await client.post(f"/api/v1/tasks/{run_id[:-1]}0:cancel", json={"kill_running": True})
    assert await resp.json() == {"canceled": True, "was_running": True}
    answer = await bot.update(run_id, b"more\n", 5)
    assert answer["must_stop"] is True
    await bot.update(run_id, exit_code=-15, duration=2.0)
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "KILLED"
    late = await bot.update(run_id, b"too late\n", 10)
    assert late["must_stop"] is True
    assert await (await client.get(f"/api/v1/tasks/{run_id}/log")).read() == b"mine\nmore\n"


async def test_cancel_before_start_ends_canceled(make_server: ServerFactory) -> None:
    """A first update answered must_stop followed by canceled:true ends the task CANCELED."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    task_id = (await (await client.post("/api/v1/tasks", json=task_body())).json())["task_id"]
    run_id = (await bot.poll())["manifest"]["task_id"]
    await client.post(f"/api/v1/tasks/{task_id}:cancel", json={"kill_running": True})
    first = await bot.update(run_id)
    assert first["must_stop"] is True
    canceled = await bot.update(run_id, canceled=True)
    assert canceled["ok"] is True
    result = await (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert result["state"] == "CANCELED"


async def test_timeout_flags_end_timed_out(make_server: ServerFactory) -> None:
    """A final update with a true timeout flag ends TIMED_OUT with the flag shown."""
    client, bot, run_id = await _running(make_server)
    await bot.update(run_id, exit_code=-15, duration=5.0, io_timeout=True, hard_timeout=False)
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "TIMED_OUT"
    assert result["io_timeout"] is True
    assert result["exit_code"] == "-15"


async def test_internal_failure_final_is_not_a_completion(make_server: ServerFactory) -> None:
    """False timeout flags without exit code keep the run going; the task_error ends it BOT_DIED."""
    client, bot, run_id = await _running(make_server)
    answer = await bot.update(run_id, b"x", 5, io_timeout=False, hard_timeout=False)
    assert answer["must_stop"] is False
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "RUNNING"
    error = await bot.call(
        f"task_error/{run_id}",
        {
            "id": "bot1",
            "task_id": run_id,
            "session": bot.session,
            "message": "Execution failed: boom: {'secret': 'x'}",
            "client_error": {"missing_cas": [], "missing_cipd": []},
        },
    )
    assert error == {"resp": 1}
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "BOT_DIED"
    assert result["internal_failure"] is True
    assert "secret" not in result["error"]


async def test_task_error_for_foreign_run_changes_nothing(make_server: ServerFactory) -> None:
    """A task_error from a bot the run does not belong to is ignored."""
    client, bot, run_id = await _running(make_server)
    other = ScriptedBot(client, bot_id="other", version=bot.version)
    await other.handshake()
    answer = await other.call(
        f"task_error/{run_id}",
        {"id": "other", "task_id": run_id, "session": other.session, "message": "x"},
    )
    assert answer == {"resp": 1}
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "RUNNING"


async def test_results_in_updates_count_once_and_bad_ones_are_400(
    make_server: ServerFactory,
) -> None:
    """Results sent with a task_update are stored once even when resent; bad ones are refused."""
    client, bot, run_id = await _running(make_server)
    results = {"unit": [{"name": "t1", "result": "pass"}], "lint": [], "work": []}
    for _ in range(2):
        await bot.update(run_id, results=results, results_offset=0)
    await bot.update(
        run_id, results={"unit": [{"name": "t2", "result": "fail"}]}, results_offset=30
    )
    stored = await (await client.get(f"/api/v1/tasks/{run_id}/results")).json()
    assert [u["name"] for u in stored["unit"]] == ["t1", "t2"]
    bad = await client.post(
        f"/swarming/api/v1/bot/task_update/{run_id}",
        json={
            "id": "bot1",
            "task_id": run_id,
            "session": bot.session,
            "results": {"unit": [{"name": "t3", "result": "meh"}]},
        },
    )
    assert bad.status == 400
    assert "unit[0].result" in (await bad.json())["error"]
