"""Two server processes sweeping the same SQLite file: every due task changes exactly once.

The background loop runs in every server process (DESIGN.md 6). Here two
sweepers, each in its own process with its own store connection, its own
queue index and its own clock at the same instant, start together on the
same due tasks of every kind: expiring slices, slice fallbacks, released
reservations, a release past the expiration, dead runs with and without a
retry left, kills, a cancelled reservation and a restart. Each task must
end in the one state its deadline calls for, with exactly one write
(its version moved by one), and the two counts must add up to the number
of due tasks: no double requeue, no lost retry, no try number skipped.
"""

from __future__ import annotations

import dataclasses
import pathlib

from server.clock import FakeClock
from server.model import TaskState
from tests.scheduler.model_driver import Fleet, SimBot, SliceSpec, TaskSpec, sweep_in_processes

START = 1_700_000_000.0
# Slices that must expire by the sweep wait this long; the others an hour.
SHORT_SECS = 120
LONG_SECS = 3600
# The sweepers run past every deadline: expirations, reservations (60 s), liveness (60 s).
SWEEP_AT = START + 200
TASKS_PER_KIND = 30
SWEEPERS = 2


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a task must be after the sweep."""

    state: TaskState
    try_number: int
    current_slice: int = 0


def _linux(secs: int, max_retries: int = 0) -> TaskSpec:
    """A task the Linux bot runs, whose slice waits `secs` (60 s bot ping tolerance)."""
    return TaskSpec(
        priority=20,
        slices=(SliceSpec((("os", "Linux"),), secs, True),),
        max_retries=max_retries,
        bot_ping_tolerance_secs=60,
    )


def _windows(*secs: int) -> TaskSpec:
    """A task no bot can run, waiting for capacity on each of its slices."""
    return TaskSpec(
        priority=20, slices=tuple(SliceSpec((("os", "Windows"),), s, True) for s in secs)
    )


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of due task: how it is made, and what the sweep must make of it."""

    spec: TaskSpec
    # How far the bot takes it: "" (never handed out), "reserved" or "claimed".
    handed: str
    # What a client does then: "" (nothing), "kill" (cancel, kill_running) or "restart".
    control: str
    outcome: Outcome


KINDS = [
    # A slice expires: the task ends EXPIRED, or waits on its next slice.
    Kind(_windows(SHORT_SECS), "", "", Outcome(TaskState.EXPIRED, 0)),
    Kind(_windows(SHORT_SECS, LONG_SECS), "", "", Outcome(TaskState.PENDING, 0, 1)),
    # An unconfirmed reservation is released, and expires too if its slice has.
    Kind(_linux(LONG_SECS), "reserved", "", Outcome(TaskState.PENDING, 0)),
    Kind(_linux(SHORT_SECS), "reserved", "", Outcome(TaskState.EXPIRED, 0)),
    # A silent run is retried while it may, else BOT_DIED; kills and restarts settle.
    Kind(_linux(LONG_SECS, max_retries=1), "claimed", "", Outcome(TaskState.PENDING, 1)),
    Kind(_linux(LONG_SECS), "claimed", "", Outcome(TaskState.BOT_DIED, 1)),
    Kind(_linux(LONG_SECS, max_retries=1), "claimed", "kill", Outcome(TaskState.KILLED, 1)),
    Kind(_linux(LONG_SECS), "reserved", "kill", Outcome(TaskState.CANCELED, 1)),
    Kind(_linux(LONG_SECS), "claimed", "restart", Outcome(TaskState.PENDING, 1)),
]


async def _make(fleet: Fleet, bot: SimBot, kind: Kind) -> str:
    """Creates a task of `kind`, hands it to the bot and controls it as the kind says."""
    _, created = await fleet.tasks.create(kind.spec.draft())
    if kind.handed:
        reply = await bot.poll(fleet)
        assert reply["cmd"] == "run", reply
        run_id = reply["manifest"]["task_id"]
        assert run_id[:-1] == created.task_id[:-1]
        if kind.handed == "claimed":
            assert (await bot.claim(fleet, run_id, f"claim-{run_id}"))["cmd"] == "run"
    if kind.control == "kill":
        assert await fleet.tasks.cancel(created.task_id, kill_running=True) == (True, True)
    elif kind.control == "restart":
        assert (await fleet.tasks.restart(created.task_id))[1]
    return created.task_id


async def _prepare(root: pathlib.Path) -> dict[str, tuple[Outcome, int]]:
    """Creates the due tasks; returns each one's expected outcome and stored version."""
    fleet = await Fleet.open(root, FakeClock(START))
    try:
        bot = SimBot(bot_id="bot0", os="Linux")
        await bot.handshake(fleet)
        assert (await bot.poll(fleet))["cmd"] == "sleep"
        expected: dict[str, Outcome] = {}
        for _ in range(TASKS_PER_KIND):
            for kind in KINDS:
                expected[await _make(fleet, bot, kind)] = kind.outcome
        versions = {}
        for task_id, outcome in expected.items():
            stored = await fleet.store.get_result(task_id)
            assert stored is not None
            versions[task_id] = (outcome, stored.version)
        return versions
    finally:
        await fleet.close()


async def test_concurrent_sweepers_make_each_due_task_change_once(tmp_path: pathlib.Path) -> None:
    """Two sweepers in two processes over one SQLite file move every due task exactly
    once, to the state its deadline calls for, and their counts add up."""
    expected = await _prepare(tmp_path)
    changed = sweep_in_processes(tmp_path, SWEEP_AT, SWEEPERS)
    assert sum(changed) == len(expected), changed

    fleet = await Fleet.attach(tmp_path, FakeClock(SWEEP_AT))
    try:
        for task_id, (outcome, version) in expected.items():
            stored = await fleet.store.get_result(task_id)
            assert stored is not None
            got = Outcome(stored.state, stored.try_number, stored.current_slice)
            assert got == outcome, task_id
            assert stored.version == version + 1, f"{task_id} was written more than once"
        # Nothing is left due, and a retried task's next run is its second try.
        assert await fleet.sweeper.run_once() == 0
        bot = SimBot(bot_id="bot1", os="Linux")
        await bot.handshake(fleet)
        tries = set()
        for _ in range(3):
            reply = await bot.poll(fleet)
            assert reply["cmd"] == "run"
            tries.add(int(reply["manifest"]["task_id"][-1], 16))
        assert tries <= {1, 2}
    finally:
        await fleet.close()
