"""The task service (server/scheduler/tasks.py): creation and restart limits."""

from __future__ import annotations

import asyncio
import unittest.mock

import pytest

from server import ids
from server.errors import Conflict
from server.model import TaskState
from tests.scheduler.model_driver import Fleet, SimBot, SliceSpec, TaskSpec

ANY_BOT = TaskSpec(priority=10, slices=(SliceSpec((), 600, True),))


async def test_colliding_task_id_is_replaced_by_a_fresh_one(fleet: Fleet) -> None:
    """Two tasks of one millisecond whose random bits collide both get stored, the second
    under a new ID (PROTOCOL.md 4.2), instead of a Conflict for the client."""
    taken, fresh = "65e8b6f0009e370", "65e8b6f0009e380"
    with unittest.mock.patch.object(ids, "new_task_id", side_effect=[taken, taken, fresh]):
        first, _ = await fleet.tasks.create(ANY_BOT.draft())
        second, result = await fleet.tasks.create(ANY_BOT.draft())
    assert (first.task_id, second.task_id, result.task_id) == (taken, fresh, fresh)
    stored = await fleet.store.get_result(fresh)
    assert stored is not None
    assert stored.state is TaskState.PENDING


async def test_restart_is_refused_once_the_last_try_runs(fleet: Fleet) -> None:
    """A task restarted until it runs try 15 cannot be restarted again: a 16th try has no
    run ID (its last hex digit is the try number); the run goes on untouched."""
    bot = SimBot(bot_id="bot0", os="Linux")
    await bot.handshake(fleet)
    await bot.poll(fleet)
    _, created = await fleet.tasks.create(ANY_BOT.draft())
    for try_number in range(1, ids.MAX_TRIES + 1):
        run_id = (await bot.poll(fleet))["manifest"]["task_id"]
        assert ids.split_run_id(run_id) == (created.task_id, try_number)
        assert (await bot.claim(fleet, run_id, f"claim-{try_number}"))["cmd"] == "run"
        if try_number == ids.MAX_TRIES:
            break
        assert (await fleet.tasks.restart(created.task_id))[1]
        stopped = bot.update_body(run_id, {"exit_code": -9, "duration": 1.0}, b"")
        assert (await bot.update(fleet, stopped))["ok"]
    before = await fleet.store.get_result(created.task_id)
    with pytest.raises(Conflict, match="last try"):
        await fleet.tasks.restart(created.task_id)
    assert await fleet.store.get_result(created.task_id) == before


async def test_a_woken_poll_runs_before_create_returns(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating a queued task lets the poll it woke go first: its bot gets the task
    before the creator gets its answer (submit-to-start is the figure that counts)."""
    ran: list[str] = []

    class Waking:
        def notify(self, queue_key: str) -> None:
            asyncio.get_running_loop().call_soon(ran.append, queue_key)

        def held_poll(self, queue_key: str) -> None:
            return None

    monkeypatch.setattr(fleet.tasks, "_notifier", Waking())
    _, created = await fleet.tasks.create(ANY_BOT.draft())
    assert ran == [created.queue_key]
