"""Property-based tests of the scheduler: random operation sequences against a model.

Each example drives the real services (tests/scheduler/model_driver.py) over
a fresh SqliteStore and FakeClock in its own event loop, and the model
(tests/scheduler/lifecycle_model.py) alongside: tasks are created,
cancelled, restarted, paused, resumed and reprioritized, bots poll, claim,
update, fail, die and come back,
stale bots write to runs that are no longer theirs, and the clock jumps and
the sweeper runs. After every step the stored tasks must equal the model's
prediction and keep these invariants:

1. One live run per try. A RUNNING task names exactly one (bot, try) pair,
   and at most one bot believes, with the server's confirmation, that it
   holds that run. A run ID is handed to a second bot only after its first
   reservation was released (by the sweeper, or by a restart) without the
   first bot ever confirming it (claim or accepted update); a confirmed run
   ID is never handed out again.
2. No task is lost: every created task is stored, listed, and in a state.
3. A poll hands out the best task the bot can run: no pending, unpaused,
   unexpired task the bot matches has a lower priority number (as last
   reprioritized), or the same one and an
   older creation time (ties then go to the lower task ID, as the Store's
   contract says).
4. Expiry exactly at the deadline: after a sweep no PENDING task is past its
   expiration (a task never requeued: past all its slices' deadlines), and
   no task ended EXPIRED before its expiration.
5. A final state never changes again: the stored record stays identical.
6. A kill is never lost: a task a cancel asked to stop while it ran ends
   CANCELED or KILLED (or is still stopping), unless a restart came after.

Refused writes (stale bots, ended runs) must change nothing, output included.
The bugs this test found are pinned by the regression tests at the end.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.model import TaskState
from tests.scheduler.model_driver import Fleet, SimBot, SliceSpec, TaskSpec
from tests.scheduler.operations import Operation, operations, task_specs
from tests.scheduler.property_driver import Driver

# Examples per run; raise it locally to explore further, e.g.
# DROVER_PROPERTY_EXAMPLES=2000 pytest tests/scheduler/test_properties.py
EXAMPLES = int(os.environ.get("DROVER_PROPERTY_EXAMPLES", "100"))
# Shrunk failures keep MIN_STEPS steps; most of them shrink to a harmless poll.
MIN_STEPS = 10
MAX_STEPS = 30


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    oses=st.lists(st.sampled_from(["Linux", "Mac"]), min_size=1, max_size=4),
    first=st.lists(task_specs, min_size=1, max_size=4),
    steps=st.lists(operations, min_size=MIN_STEPS, max_size=MAX_STEPS),
)
def test_random_operations_keep_the_scheduler_invariants(
    oses: list[str], first: list[TaskSpec], steps: list[Operation]
) -> None:
    """Random sequences of task, bot, client and clock operations keep every invariant."""
    driver = Driver(oses)
    try:
        for spec in first:
            driver.create(spec)
        driver.check()
        for number, op in enumerate(steps):
            try:
                driver.apply(op)
                driver.check()
            except AssertionError as e:
                e.add_note(f"at step {number}: {op}")
                raise
    finally:
        driver.close()


# Bugs the property test above found, each in its smallest form.


async def _bot(fleet: Fleet, bot_id: str) -> SimBot:
    """A Linux bot with an open session."""
    bot = SimBot(bot_id=bot_id, os="Linux")
    await bot.handshake(fleet)
    return bot


def _linux_task(*expirations: int, first_on_mac: bool = False) -> TaskSpec:
    """Linux slices that wait for capacity, after a Mac one (1800 s) that does not."""
    slices = [SliceSpec((("os", "Linux"),), secs, True) for secs in expirations]
    if first_on_mac:
        slices.insert(0, SliceSpec((("os", "Mac"),), 1800, False))
    return TaskSpec(priority=10, slices=tuple(slices))


async def test_released_task_past_its_deadline_expires_in_the_same_sweep(fleet: Fleet) -> None:
    """A sweep that releases a reservation after its task's expiration leaves it EXPIRED."""
    bot = await _bot(fleet, "bot0")
    _, created = await fleet.tasks.create(_linux_task(60).draft())
    assert (await bot.poll(fleet))["cmd"] == "run"
    fleet.clock.advance(60)
    await fleet.sweeper.run_once()
    result = await fleet.store.get_result(created.task_id)
    assert result is not None
    assert result.state is TaskState.EXPIRED


async def test_cancelled_reservation_is_not_run_again_after_its_release(fleet: Fleet) -> None:
    """A task cancelled before its bot confirmed it is not handed to another bot later."""
    lost, other = await _bot(fleet, "bot0"), await _bot(fleet, "bot1")
    _, created = await fleet.tasks.create(_linux_task(600).draft())
    assert (await lost.poll(fleet))["cmd"] == "run"
    assert await fleet.tasks.cancel(created.task_id, kill_running=True) == (True, True)
    fleet.clock.advance(61)
    await fleet.sweeper.run_once()
    assert (await other.poll(fleet))["cmd"] == "sleep"
    result = await fleet.store.get_result(created.task_id)
    assert result is not None
    assert result.state is TaskState.CANCELED


async def test_restart_ended_by_task_error_requeues_with_its_slice_expiration(
    fleet: Fleet,
) -> None:
    """A restarted run that ends with task_error waits its current slice's expiration again."""
    bot = await _bot(fleet, "bot0")
    await bot.poll(fleet)
    # No Mac bot: the task waits on its second slice, the Linux one (300 s).
    _, created = await fleet.tasks.create(_linux_task(300, first_on_mac=True).draft())
    assert created.current_slice == 1
    run_id = (await bot.poll(fleet))["manifest"]["task_id"]
    assert (await bot.claim(fleet, run_id, "c1"))["cmd"] == "run"
    assert (await fleet.tasks.restart(created.task_id))[1]
    fleet.clock.advance(10)
    await bot.task_error(fleet, run_id, client_error=False)
    result = await fleet.store.get_result(created.task_id)
    assert result is not None
    assert result.state is TaskState.PENDING
    assert result.expiration_ts == fleet.clock.now() + 300


async def test_expired_requeued_slice_falls_back_to_a_later_runnable_slice(fleet: Fleet) -> None:
    """A restarted task whose slice expires moves to a later runnable slice, not to EXPIRED."""
    linux = await _bot(fleet, "bot0")
    await linux.poll(fleet)
    # No Mac bot yet: the task waits on slice 1 (Linux, 60 s); slice 2 is Linux too.
    _, created = await fleet.tasks.create(_linux_task(60, 600, first_on_mac=True).draft())
    assert created.current_slice == 1
    run_id = (await linux.poll(fleet))["manifest"]["task_id"]
    assert (await linux.claim(fleet, run_id, "c1"))["cmd"] == "run"
    assert (await fleet.tasks.restart(created.task_id))[1]
    killed = linux.update_body(run_id, {"exit_code": -9, "duration": 1.0}, b"")
    assert (await linux.update(fleet, killed))["ok"]
    # A Mac bot shows up: slice 0 (1800 s from creation) could run again.
    mac = SimBot(bot_id="bot1", os="Mac")
    await mac.handshake(fleet)
    assert (await mac.poll(fleet))["cmd"] == "sleep"
    fleet.clock.advance(60)
    await fleet.sweeper.run_once()
    result = await fleet.store.get_result(created.task_id)
    assert result is not None
    assert (result.state, result.current_slice) == (TaskState.PENDING, 2)


async def test_resume_leaves_a_task_that_ended_while_paused_alone(fleet: Fleet) -> None:
    """A paused task cancelled meanwhile stays as it ended: resuming it changes nothing."""
    _, created = await fleet.tasks.create(_linux_task(600).draft())
    assert (await fleet.tasks.pause(created.task_id))[1]
    assert (await fleet.tasks.cancel(created.task_id, kill_running=False))[0]
    ended = await fleet.store.get_result(created.task_id)
    assert ended is not None
    assert ended.state is TaskState.CANCELED
    assert (await fleet.tasks.resume(created.task_id))[1] is False
    assert await fleet.store.get_result(created.task_id) == ended
