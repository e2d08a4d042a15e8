"""Output fencing in task_update (server/botapi/runs.py): output and results are written only
under a run that is the bot's for good, before the update that may end the run."""

from __future__ import annotations

import pathlib
import unittest.mock
from collections.abc import AsyncIterator

import pytest

from server.clock import FakeClock
from server.model import TaskResult
from tests.scheduler.model_driver import (
    RESERVATION_TIMEOUT_SECS,
    Fleet,
    SimBot,
    SliceSpec,
    TaskSpec,
)

LINUX = TaskSpec(priority=20, slices=(SliceSpec((("os", "Linux"),), 3600, True),))


@pytest.fixture
async def fleet(tmp_path: pathlib.Path) -> AsyncIterator[Fleet]:
    """The scheduler services over a store in tmp_path; closed at teardown."""
    opened = await Fleet.open(tmp_path, FakeClock())
    yield opened
    await opened.close()


async def _bots(fleet: Fleet, *bot_ids: str) -> list[SimBot]:
    """Linux bots that have polled once (so the server knows their dimensions)."""
    bots = []
    for bot_id in bot_ids:
        bot = SimBot(bot_id=bot_id, os="Linux")
        await bot.handshake(fleet)
        assert (await bot.poll(fleet))["cmd"] == "sleep"
        bots.append(bot)
    return bots


async def test_a_late_write_of_a_released_reservation_misses_the_next_bots_output(
    fleet: Fleet,
) -> None:
    """A stock bot's first update, with output, that races the release of its unconfirmed
    reservation and the hand-over of the same run ID to another bot is told to stop and
    writes nothing: the other bot's output holds only its own bytes."""
    first, second = await _bots(fleet, "bot0", "bot1")
    _, created = await fleet.tasks.create(LINUX.draft())
    run_id = (await first.poll(fleet))["manifest"]["task_id"]
    read = fleet.store.get_result
    handed: list[str] = []

    async def read_then_hand_over(task_id: str) -> TaskResult | None:
        # The first read is task_update's own: the run still looks like bot0's.
        stored = await read(task_id)
        if not handed:
            handed.append(task_id)
            fleet.clock.advance(RESERVATION_TIMEOUT_SECS)
            assert await fleet.sweeper.run_once() == 1
            handed.append((await second.poll(fleet))["manifest"]["task_id"])
        return stored

    late = first.update_body(run_id, {}, b"bot0 was here\n")
    with unittest.mock.patch.object(fleet.store, "get_result", side_effect=read_then_hand_over):
        answer = await first.update(fleet, late)
    assert handed == [created.task_id, run_id], "the run ID went to bot1 unchanged"
    assert (answer["ok"], answer["must_stop"]) == (False, True)
    assert await fleet.store.read_output(run_id) == b""
    own = await second.update(fleet, second.update_body(run_id, {}, b"bot1\n"))
    assert own["ok"] is True
    assert await fleet.store.read_output(run_id) == b"bot1\n"


async def test_the_final_chunk_is_stored_before_the_run_ends(fleet: Fleet) -> None:
    """A stock bot's only update, carrying its last chunk and its exit code, stores the
    chunk before the result turns final (so a follower that sees the end has the chunk),
    and the same update sent again is acknowledged without writing anything twice."""
    (bot,) = await _bots(fleet, "bot0")
    _, created = await fleet.tasks.create(LINUX.draft())
    run_id = (await bot.poll(fleet))["manifest"]["task_id"]
    write = fleet.store.update_result
    seen_at_end: list[bytes] = []

    async def note_output_at_the_end(result: TaskResult) -> TaskResult:
        if not result.state.is_active:
            seen_at_end.append(await fleet.store.read_output(run_id))
        return await write(result)

    final = bot.update_body(run_id, {"exit_code": 0, "duration": 1.0}, b"all of it\n")
    with unittest.mock.patch.object(
        fleet.store, "update_result", side_effect=note_output_at_the_end
    ):
        assert (await bot.update(fleet, final))["ok"] is True
    assert seen_at_end == [b"all of it\n"]
    ended = await fleet.store.get_result(created.task_id)
    assert (await bot.update(fleet, final)) == {"ok": True, "must_stop": False}
    assert await fleet.store.get_result(created.task_id) == ended
    assert await fleet.store.read_output(run_id) == b"all of it\n"
