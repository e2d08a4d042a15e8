"""Children stop with their parent (server/scheduler/children.py, PROTOCOL.md 4.1): whatever
ends the parent, in whatever server process, and after a server died halfway."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import unittest.mock
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from server.clock import FakeClock
from server.errors import InvalidRequest
from server.model import TaskQuery, TaskResult, TaskState
from server.scheduler import children
from tests.scheduler.model_driver import Fleet, SimBot, SliceSpec, TaskSpec, sweep_in_processes

# A parent whose slice expires after a minute, children that wait an hour.
SHORT = TaskSpec(priority=20, slices=(SliceSpec((("os", "Linux"),), 60, True),))
LONG = TaskSpec(priority=20, slices=(SliceSpec((("os", "Linux"),), 3600, True),))
# Nobody runs Windows: such tasks stay pending until they expire.
UNRUNNABLE = TaskSpec(priority=20, slices=(SliceSpec((("os", "Windows"),), 3600, True),))
UNRUNNABLE_SHORT = TaskSpec(priority=20, slices=(SliceSpec((("os", "Windows"),), 60, True),))


async def _stored(fleet: Fleet, task_id: str) -> TaskResult:
    result = await fleet.store.get_result(task_id)
    assert result is not None
    return result


async def _child(fleet: Fleet, parent_id: str, spec: TaskSpec = LONG) -> TaskResult:
    """Creates a child of `parent_id`; returns its stored result."""
    draft = dataclasses.replace(spec.draft(), parent_task_id=parent_id)
    _, result = await fleet.tasks.create(draft)
    return result


async def _linux_bot(fleet: Fleet, bot_id: str) -> SimBot:
    """A Linux bot that has polled once, so the server knows its dimensions."""
    bot = SimBot(bot_id=bot_id, os="Linux")
    await bot.handshake(fleet)
    assert (await bot.poll(fleet))["cmd"] == "sleep"
    return bot


async def _running(fleet: Fleet, bot: SimBot, spec: TaskSpec = LONG) -> tuple[str, str]:
    """Creates a task and has `bot` claim it; returns (task ID, run ID)."""
    _, created = await fleet.tasks.create(spec.draft())
    run_id: str = (await bot.poll(fleet))["manifest"]["task_id"]
    assert (await bot.claim(fleet, run_id, f"claim-{run_id}"))["cmd"] == "run"
    return created.task_id, run_id


async def _update(fleet: Fleet, bot: SimBot, run_id: str, **fields: object) -> dict[str, object]:
    return await bot.update(fleet, bot.update_body(run_id, fields, b""))


# How a parent ends: each takes the fleet, a Linux bot and the parent's run ("" while
# it is pending) and ends it in the state named first.
Ender = Callable[[Fleet, SimBot, str, str], Awaitable[object]]


async def _complete(fleet: Fleet, bot: SimBot, task_id: str, run_id: str) -> object:
    return await _update(fleet, bot, run_id, exit_code=0, duration=1.0)


async def _time_out(fleet: Fleet, bot: SimBot, task_id: str, run_id: str) -> object:
    return await _update(fleet, bot, run_id, exit_code=-15, duration=60.0, hard_timeout=True)


async def _kill(fleet: Fleet, bot: SimBot, task_id: str, run_id: str) -> object:
    await fleet.tasks.cancel(task_id, kill_running=True)
    return await _update(fleet, bot, run_id, exit_code=-9, duration=1.0)


async def _task_error(fleet: Fleet, bot: SimBot, task_id: str, run_id: str) -> object:
    return await bot.task_error(fleet, run_id, client_error=False)


async def _lose_the_bot(fleet: Fleet, bot: SimBot, task_id: str, run_id: str) -> object:
    fleet.clock.advance(LONG.bot_ping_tolerance_secs)
    return await fleet.sweeper.run_once()


async def _expire(fleet: Fleet, bot: SimBot, task_id: str, run_id: str) -> object:
    fleet.clock.advance(60)
    return await fleet.sweeper.run_once()


async def _cancel(fleet: Fleet, bot: SimBot, task_id: str, run_id: str) -> object:
    return await fleet.tasks.cancel(task_id, kill_running=False)


ENDS: list[tuple[TaskState, bool, Ender]] = [
    # (the parent's final state, whether it runs first, how it gets there)
    (TaskState.COMPLETED, True, _complete),
    (TaskState.TIMED_OUT, True, _time_out),
    (TaskState.KILLED, True, _kill),
    (TaskState.BOT_DIED, True, _task_error),
    (TaskState.BOT_DIED, True, _lose_the_bot),
    (TaskState.EXPIRED, False, _expire),
    (TaskState.CANCELED, False, _cancel),
]


@pytest.mark.parametrize(("state", "runs", "end"), ENDS, ids=[e.__name__ for _, _, e in ENDS])
async def test_every_way_a_parent_ends_cancels_its_pending_children(
    fleet: Fleet, state: TaskState, runs: bool, end: Ender
) -> None:
    """A parent that completes, times out, is killed, reports a task_error, loses its bot,
    expires or is cancelled leaves its pending children and grandchildren CANCELED, and
    nothing due."""
    bot = await _linux_bot(fleet, "bot0")
    if runs:
        parent, run_id = await _running(fleet, bot)
    else:
        _, created = await fleet.tasks.create(SHORT.draft())
        parent, run_id = created.task_id, ""
    child = await _child(fleet, parent, UNRUNNABLE)
    grandchild = await _child(fleet, child.task_id, UNRUNNABLE)
    assert (await _stored(fleet, parent)).children_to_stop
    await end(fleet, bot, parent, run_id)
    ended = await _stored(fleet, parent)
    assert ended.state is state
    assert not ended.children_to_stop
    for task in (child, grandchild):
        assert (await _stored(fleet, task.task_id)).state is TaskState.CANCELED
    assert await fleet.store.list_due(fleet.clock.now(), 10) == []


async def test_a_running_child_is_killed_when_its_parent_completes(fleet: Fleet) -> None:
    """A child running on another bot is told to stop once its parent completes, and ends
    KILLED; the parent's completion is acknowledged as usual."""
    parent_bot = await _linux_bot(fleet, "bot0")
    child_bot = await _linux_bot(fleet, "bot1")
    parent, parent_run = await _running(fleet, parent_bot)
    child = await _child(fleet, parent)
    child_run = (await child_bot.poll(fleet))["manifest"]["task_id"]
    assert child_run[:-1] == child.task_id[:-1]
    assert (await child_bot.claim(fleet, child_run, "c"))["cmd"] == "run"
    answer = await _update(fleet, parent_bot, parent_run, exit_code=0, duration=1.0)
    assert (answer["ok"], answer["must_stop"]) == (True, False)
    asked = await _stored(fleet, child.task_id)
    assert (asked.state, asked.killing) == (TaskState.RUNNING, True)
    assert (await _update(fleet, child_bot, child_run))["must_stop"] is True
    await _update(fleet, child_bot, child_run, exit_code=-9, duration=2.0)
    assert (await _stored(fleet, child.task_id)).state is TaskState.KILLED


async def test_children_a_dead_server_left_running_are_stopped_by_the_next_sweep(
    fleet: Fleet,
) -> None:
    """A server that ends a parent and dies before stopping its children leaves the
    parent due: the next sweep cancels the children and clears the mark, once."""
    bot = await _linux_bot(fleet, "bot0")
    parent, run_id = await _running(fleet, bot)
    child = await _child(fleet, parent, UNRUNNABLE)
    # The process dies right after the parent's compare-and-set.
    with unittest.mock.patch.object(children, "stop_children", return_value=False):
        await _complete(fleet, bot, parent, run_id)
    ended = await _stored(fleet, parent)
    assert (ended.state, ended.children_to_stop) == (TaskState.COMPLETED, True)
    assert (await _stored(fleet, child.task_id)).state is TaskState.PENDING
    assert [r.task_id for r in await fleet.store.list_due(fleet.clock.now(), 10)] == [parent]
    assert await fleet.sweeper.run_once() == 1
    assert (await _stored(fleet, child.task_id)).state is TaskState.CANCELED
    assert not (await _stored(fleet, parent)).children_to_stop
    assert await fleet.sweeper.run_once() == 0


def _parent_ends_once_adopted(fleet: Fleet) -> contextlib.AbstractContextManager[Any]:
    """Patches `adopt` so that the parent is cancelled right after its child's check."""
    adopt = children.adopt

    async def adopt_then_end(store: object, parent_id: str) -> TaskResult:
        parent = await adopt(fleet.store, parent_id)
        assert await fleet.tasks.cancel(parent_id, kill_running=True) == (True, False)
        return parent

    return unittest.mock.patch.object(children, "adopt", adopt_then_end)


async def test_a_child_stored_while_its_parent_ends_is_cancelled_at_once(fleet: Fleet) -> None:
    """A parent that ends between its child's check and the child's storing (too early for
    its own listing to see the child) gets the child cancelled by the creation itself."""
    _, created = await fleet.tasks.create(UNRUNNABLE.draft())
    with _parent_ends_once_adopted(fleet):
        child = await _child(fleet, created.task_id, UNRUNNABLE)
    assert child.state is TaskState.CANCELED
    assert (await _stored(fleet, child.task_id)).state is TaskState.CANCELED


async def test_a_child_whose_server_died_before_its_second_look_is_cancelled_by_a_sweep(
    fleet: Fleet,
) -> None:
    """A parent that ends between its child's check and the child's storing, while the
    creating server dies before its second look, leaves the child pending: the sweep at its
    parent check cancels it, and nothing is due afterwards."""
    _, created = await fleet.tasks.create(UNRUNNABLE.draft())
    died = RuntimeError("the server died")
    with (
        _parent_ends_once_adopted(fleet),
        unittest.mock.patch.object(children, "confirm_parent", side_effect=died),
        pytest.raises(RuntimeError, match="died"),
    ):
        await _child(fleet, created.task_id, UNRUNNABLE)
    [orphan] = [t for t in await _listed(fleet) if t.task_id != created.task_id]
    assert orphan.state is TaskState.PENDING
    assert orphan.parent_check_ts == fleet.clock.now() + children.PARENT_CHECK_SECS
    fleet.clock.advance(children.PARENT_CHECK_SECS - 1)
    assert await fleet.sweeper.run_once() == 0
    fleet.clock.advance(1)
    assert await fleet.sweeper.run_once() == 1
    swept = await _stored(fleet, orphan.task_id)
    assert (swept.state, swept.parent_check_ts) == (TaskState.CANCELED, None)
    assert await fleet.store.list_due(fleet.clock.now() + 3000, 10) == []


async def test_a_child_of_a_live_parent_is_left_alone_by_its_parent_check(fleet: Fleet) -> None:
    """The creation's second look clears the parent check of a child whose parent lives; left
    set (the server died first), the sweep at that time only clears it."""
    _, created = await fleet.tasks.create(UNRUNNABLE.draft())
    child = await _child(fleet, created.task_id, UNRUNNABLE)
    assert (child.state, child.parent_check_ts) == (TaskState.PENDING, None)
    with (
        unittest.mock.patch.object(children, "confirm_parent", side_effect=RuntimeError),
        pytest.raises(RuntimeError),
    ):
        await _child(fleet, created.task_id, UNRUNNABLE)
    [unchecked] = [t for t in await _listed(fleet) if t.parent_check_ts is not None]
    fleet.clock.advance(children.PARENT_CHECK_SECS)
    assert await fleet.sweeper.run_once() == 1
    swept = await _stored(fleet, unchecked.task_id)
    assert (swept.state, swept.parent_check_ts) == (TaskState.PENDING, None)
    assert swept.version == unchecked.version + 1
    assert (await _stored(fleet, created.task_id)).state is TaskState.PENDING


async def _listed(fleet: Fleet) -> list[TaskResult]:
    return list((await fleet.store.list_tasks(TaskQuery(limit=100))).items)


async def test_an_ended_task_cannot_become_a_parent(fleet: Fleet) -> None:
    """Creating a child of a task that has ended is refused and stores nothing, the
    parent included."""
    _, created = await fleet.tasks.create(UNRUNNABLE.draft())
    await fleet.tasks.cancel(created.task_id, kill_running=False)
    ended = await _stored(fleet, created.task_id)
    with pytest.raises(InvalidRequest, match="CANCELED"):
        await _child(fleet, created.task_id)
    assert await _stored(fleet, created.task_id) == ended
    listed = await fleet.store.list_tasks(TaskQuery(limit=10))
    assert [t.task_id for t in listed.items] == [created.task_id]


async def test_sweepers_in_two_processes_stop_each_child_once(tmp_path: pathlib.Path) -> None:
    """Two server processes sweeping at once expire each parent once and cancel each of its
    children with exactly one write; the parents end unmarked and nothing is left due."""
    start = 1_700_000_000.0
    # Past the parents' expiration (60 s), long before their children's (an hour).
    sweep_at = start + 120
    fleet = await Fleet.open(tmp_path, FakeClock(start))
    try:
        parents = [(await fleet.tasks.create(UNRUNNABLE_SHORT.draft()))[1] for _ in range(10)]
        kids = [await _child(fleet, p.task_id, UNRUNNABLE) for p in parents for _ in range(3)]
        # Marking happened at the first child: each parent's version is the one to sweep.
        versions = {t.task_id: (await _stored(fleet, t.task_id)).version for t in parents + kids}
    finally:
        await fleet.close()
    sweep_in_processes(tmp_path, sweep_at, 2)
    fleet = await Fleet.attach(tmp_path, FakeClock(sweep_at))
    try:
        for parent in parents:
            ended = await _stored(fleet, parent.task_id)
            assert (ended.state, ended.children_to_stop) == (TaskState.EXPIRED, False)
            # One write to expire it, one to clear its mark.
            assert ended.version == versions[parent.task_id] + 2, parent.task_id
        for kid in kids:
            stored = await _stored(fleet, kid.task_id)
            assert stored.state is TaskState.CANCELED
            assert stored.version == versions[kid.task_id] + 1, f"{kid.task_id} written twice"
        assert await fleet.sweeper.run_once() == 0
    finally:
        await fleet.close()
