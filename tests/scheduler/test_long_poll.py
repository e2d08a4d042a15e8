"""Long polling: an idle bot's poll is held and answered as soon as work arrives."""

from __future__ import annotations

import asyncio
import pathlib

from server.appkeys import BOT_SERVICE
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of


async def test_held_poll_is_answered_run_when_a_task_arrives(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A poll held for 30 s returns `run` right after a matching task is created."""
    (config_dir / "settings.cfg").write_text("long_poll_secs: 30\n")
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    held = asyncio.create_task(bot.poll())
    waiters = app_of(client)[BOT_SERVICE].waiters
    for _ in range(100):
        if waiters.held:
            break
        await asyncio.sleep(0.01)
    assert waiters.held == 1
    assert not held.done()
    await client.post("/api/v1/tasks", json=task_body())
    answer = await asyncio.wait_for(held, 10)
    assert answer["cmd"] == "run"
    assert waiters.held == 0


async def test_held_poll_ignores_tasks_it_cannot_run(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A task for other bots does not end a held poll; the hold ends in a sleep."""
    (config_dir / "settings.cfg").write_text("long_poll_secs: 1\n")
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    held = asyncio.create_task(bot.poll())
    await asyncio.sleep(0.2)
    body = task_body()
    body["task_slices"][0]["properties"]["dimensions"].append({"key": "os", "value": "Mac"})
    await client.post("/api/v1/tasks", json=body)
    answer = await asyncio.wait_for(held, 10)
    assert answer["cmd"] == "sleep"
