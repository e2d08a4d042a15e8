"""Long polling: an idle bot's poll is held and answered as soon as work arrives."""

from __future__ import annotations

import asyncio
import pathlib
import random

import pytest

from server.appkeys import BOT_SERVICE
from server.botapi.service import sleep_duration
from server.config.model import Settings
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of, until_held

# The clients here call without a token, as the config_dir fixture allows.
ANONYMOUS = 'anonymous_role: "admin"\n'


async def test_held_poll_is_answered_run_when_a_task_arrives(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A poll held for 30 s returns `run` right after a matching task is created."""
    (config_dir / "settings.cfg").write_text(f"long_poll_secs: 30\n{ANONYMOUS}")
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    held = asyncio.create_task(bot.poll())
    await until_held(client)
    assert not held.done()
    await client.post("/api/v1/tasks", json=task_body())
    answer = await asyncio.wait_for(held, 10)
    assert answer["cmd"] == "run"
    assert app_of(client)[BOT_SERVICE].waiters.held == 0


async def test_held_poll_ignores_tasks_it_cannot_run(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A task for other bots does not end a held poll; the hold ends in a sleep."""
    (config_dir / "settings.cfg").write_text(f"long_poll_secs: 1\n{ANONYMOUS}")
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


class _Draw(random.Random):
    """A random source whose draws are all `value`."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        """Always the same draw."""
        return self.value


@pytest.mark.parametrize(
    ("streak", "draw", "duration"),
    [
        (0, 0.5, 1.5),
        (1, 0.5, 2.25),
        (9, 0.5, 1.5**10),
        (10, 0.5, 60.0),
        (50, 0.5, 60.0),
        ("x", 0.5, 1.5),
        (-3, 0.5, 1.5),
        (50, 0.01, 1.0),
    ],
)
def test_idle_sleep_backs_off_with_the_streak_up_to_the_cap(
    streak: object, draw: float, duration: float
) -> None:
    """Without work a bot sleeps 1.5^(streak+1) s, capped at max_bot_sleep_time; one
    sleep in twenty is 1 s; a malformed streak counts as 0 (PROTOCOL.md 1.5 step 9)."""
    state = {"sleep_streak": streak}
    assert sleep_duration(Settings(max_bot_sleep_time=60), state, _Draw(draw)) == duration
