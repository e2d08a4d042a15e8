"""Property-based tests of the scheduler: random operation sequences against a model.

Each example drives the real services (tests/scheduler/model_driver.py) over
a fresh SqliteStore and FakeClock in its own event loop: tasks are created,
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

import asyncio
import dataclasses
import os
import pathlib
import tempfile
import unittest.mock
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server import ids
from server.clock import FakeClock
from server.errors import Conflict
from server.model import TaskQuery, TaskResult, TaskState
from tests.scheduler.model_driver import (
    Completion,
    Expected,
    Fleet,
    Model,
    SimBot,
    SliceSpec,
    TaskIds,
    TaskSpec,
)

T = TypeVar("T")

# Examples per run; raise it locally to explore further, e.g.
# DROVER_PROPERTY_EXAMPLES=2000 pytest tests/scheduler/test_properties.py
EXAMPLES = int(os.environ.get("DROVER_PROPERTY_EXAMPLES", "100"))
# Shrunk failures keep MIN_STEPS steps; most of them shrink to a harmless poll.
MIN_STEPS = 10
MAX_STEPS = 30

# task_update bodies, in the shapes PROTOCOL.md 0.2.7 U4 lists (and two edge ones).
UPDATE_KINDS: dict[str, dict[str, Any]] = {
    "ping": {},
    "exit_0": {
        "exit_code": 0,
        "duration": 2.5,
        "bot_overhead": 0.1,
        "io_timeout": False,
        "hard_timeout": False,
    },
    "exit_1": {"exit_code": 1, "duration": 3.0},
    "hard_timeout": {"exit_code": -15, "duration": 60.0, "hard_timeout": True},
    # A true flag alone is a completion (U3) ...
    "io_timeout_flag": {"io_timeout": True},
    # ... false flags without an exit code are not (the internal-failure final).
    "false_flags": {"io_timeout": False, "hard_timeout": False},
    "canceled": {"canceled": True},
}

# Requested dimensions besides the pool: bots are os:Linux or os:Mac, bot1
# exists whenever there are two bots or more, and nobody runs Windows.
DIMENSION_VARIANTS: list[tuple[tuple[str, str], ...]] = [
    (("os", "Linux"),),
    (("os", "Mac"),),
    (("os", "Linux|Mac"),),
    (),
    (("os", "Windows"),),
    (("id", "bot1"),),
]

slice_specs = st.builds(
    SliceSpec,
    dimensions=st.sampled_from(DIMENSION_VARIANTS),
    expiration_secs=st.sampled_from([60, 300, 900, 1800]),
    wait_for_capacity=st.sampled_from([True, True, True, False]),
)
task_specs = st.builds(
    TaskSpec,
    priority=st.sampled_from([10, 20, 30]),
    slices=st.lists(slice_specs, min_size=1, max_size=3).map(tuple),
    max_retries=st.sampled_from([0, 1]),
    bot_ping_tolerance_secs=st.sampled_from([60, 600]),
)


# Operations. Indices pick among the bots or tasks present when the step runs.


@dataclasses.dataclass(frozen=True)
class Create:
    """A client creates a task."""

    spec: TaskSpec


@dataclasses.dataclass(frozen=True)
class BotStep:
    """Bot `bot` acts: see Driver.bot_step for what each action does in each bot state."""

    bot: int
    action: str
    output: bool = False
    pick: int = 0


@dataclasses.dataclass(frozen=True)
class Cancel:
    """A client cancels a task, preferably one in `state`."""

    task: int
    state: str
    kill_running: bool


@dataclasses.dataclass(frozen=True)
class Restart:
    """A client restarts a task, preferably one in `state`."""

    task: int
    state: str


@dataclasses.dataclass(frozen=True)
class Pause:
    """A client pauses (or resumes) a task, preferably one in `state`."""

    task: int
    state: str
    resume: bool


@dataclasses.dataclass(frozen=True)
class Reprioritize:
    """A client changes a task's priority, preferably one in `state`."""

    task: int
    state: str
    priority: int


@dataclasses.dataclass(frozen=True)
class Advance:
    """Time passes, then the sweeper runs."""

    seconds: int


@dataclasses.dataclass(frozen=True)
class ToDeadline:
    """The clock jumps to a task's next deadline (or a second before), maybe sweeping."""

    pick: int
    offset: int
    sweep: bool


Operation = Create | BotStep | Cancel | Restart | Pause | Reprioritize | Advance | ToDeadline

# A bot's actions, weighted by repetition: mostly work on the run it holds.
BOT_ACTIONS = [
    "poll",
    "poll",
    "claim",
    "claim",
    "claim_again",
    *[f"update:{kind}" for kind in UPDATE_KINDS],
    "update:ping",
    "update:ping",
    "update:exit_0",
    "task_error",
    "task_error:client",
    "die",
    "stale",
    "stale",
]
STALE_ACTIONS = [*sorted(UPDATE_KINDS), "task_error", "claim"]
# Which tasks a client acts on: mostly running ones, where it matters most.
TARGET_STATES = ["RUNNING", "RUNNING", "PENDING", "any"]
picks = st.integers(0, 63)

OPERATIONS: dict[str, st.SearchStrategy[Operation]] = {
    "create": st.builds(Create, spec=task_specs),
    "bot": st.builds(
        BotStep,
        bot=picks,
        action=st.sampled_from(BOT_ACTIONS),
        output=st.booleans(),
        pick=picks,
    ),
    "cancel": st.builds(
        Cancel, task=picks, state=st.sampled_from(TARGET_STATES), kill_running=st.booleans()
    ),
    "restart": st.builds(Restart, task=picks, state=st.sampled_from(TARGET_STATES)),
    "pause": st.builds(
        Pause, task=picks, state=st.sampled_from(TARGET_STATES), resume=st.booleans()
    ),
    "reprioritize": st.builds(
        Reprioritize,
        task=picks,
        state=st.sampled_from(["PENDING", "PENDING", "any"]),
        priority=st.sampled_from([5, 10, 20, 30]),
    ),
    # Mostly short steps, so runs live long enough to be updated; sometimes long ones.
    "advance": st.builds(Advance, seconds=st.one_of(st.integers(0, 90), st.integers(0, 2000))),
    "deadline": st.builds(
        ToDeadline, pick=picks, offset=st.sampled_from([-1, 0]), sweep=st.booleans()
    ),
}
OPERATION_WEIGHTS = ["bot"] * 10 + ["create"] * 2 + ["cancel", "restart"] + ["advance"] * 3
OPERATION_WEIGHTS += ["pause", "reprioritize"]
OPERATION_WEIGHTS += ["deadline"] * 2
operations = st.sampled_from(OPERATION_WEIGHTS).flatmap(lambda kind: OPERATIONS[kind])


@dataclasses.dataclass
class Handing:
    """A `run` answer: which bot got a run ID, and what became of that reservation."""

    bot_id: str
    confirmed: bool = False
    released: bool = False


def view_of_result(r: TaskResult) -> dict[str, object]:
    """The fields of a stored result that the model predicts."""
    running = r.state is TaskState.RUNNING
    return {
        "state": r.state.name,
        "try_number": r.try_number,
        "bot_id": r.bot_id,
        "current_slice": r.current_slice,
        "killing": r.killing,
        "restarting": r.restarting,
        "exit_code": r.exit_code,
        "duration": r.duration,
        "expiration_ts": r.expiration_ts if r.state is TaskState.PENDING else None,
        "reserved_until": r.reserved_until if running else None,
        "dead_after_ts": r.dead_after_ts if running else None,
        "claim_id": r.claim_id if running else None,
        "paused": r.paused if r.state.is_active else None,
        "priority": r.priority,
    }


def view_of_expected(e: Expected) -> dict[str, object]:
    """The same fields as the model has them."""
    running = e.state is TaskState.RUNNING
    return {
        "state": e.state.name,
        "try_number": e.try_number,
        "bot_id": e.bot_id,
        "current_slice": e.current_slice,
        "killing": e.killing,
        "restarting": e.restarting,
        "exit_code": e.exit_code,
        "duration": e.duration,
        "expiration_ts": e.expiration_ts if e.state is TaskState.PENDING else None,
        "reserved_until": e.reserved_until if running else None,
        "dead_after_ts": e.dead_after_ts if running else None,
        "claim_id": e.claim_id if running else None,
        "paused": e.paused if e.state.is_active else None,
        "priority": e.priority,
    }


class Driver:
    """Applies operations to the real services and to the model, and checks the invariants."""

    def __init__(self, oses: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory(prefix="drover-props-")
        # Task IDs carry 16 random bits that order same-millisecond tasks:
        # deterministic ones keep every example reproducible.
        self.ids_patch = unittest.mock.patch.object(ids, "new_task_id", TaskIds())
        self.ids_patch.start()
        self.clock = FakeClock()
        self.fleet = self.run(Fleet.open(pathlib.Path(self.tmp.name), self.clock))
        self.model = Model()
        self.bots = [SimBot(bot_id=f"bot{i}", os=os_name) for i, os_name in enumerate(oses)]
        self.handings: dict[str, list[Handing]] = {}
        self.finals: dict[str, TaskResult] = {}
        self.outputs: dict[str, bytearray] = {}
        # Bots connect; the server learns their reported dimensions at their first poll.
        for bot in self.bots:
            self.run(bot.handshake(self.fleet))
            self.model.saw_handshake(bot, self.clock.now())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs one service call on this example's event loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Closes the store and the loop, and removes the example's files."""
        try:
            self.run(self.fleet.close())
        finally:
            self.loop.close()
            self.ids_patch.stop()
            self.tmp.cleanup()

    def apply(self, op: Operation) -> None:
        """Applies one operation to both sides, checking what it answers."""
        if isinstance(op, Create):
            self.create(op.spec)
        elif isinstance(op, BotStep):
            self.bot_step(op)
        elif isinstance(op, Cancel):
            self.cancel(op)
        elif isinstance(op, Restart):
            self.restart(op)
        elif isinstance(op, Pause):
            self.pause(op)
        elif isinstance(op, Reprioritize):
            self.reprioritize(op)
        elif isinstance(op, Advance):
            self.clock.advance(op.seconds)
            self.sweep()
        else:
            self.to_deadline(op)

    # Clients.

    def create(self, spec: TaskSpec) -> None:
        """Creates a task; it is PENDING or, without any slice that can run, NO_RESOURCE."""
        now = self.clock.now()
        _, result = self.run(self.fleet.tasks.create(spec.draft()))
        expected = self.model.create(result.task_id, spec, now)
        assert result.state is expected.state
        event(f"create: {result.state.name}")

    def _task(self, pick: int, state: str) -> Expected | None:
        tasks = list(self.model.tasks.values())
        tasks = [t for t in tasks if t.state.name == state] or tasks
        return tasks[pick % len(tasks)] if tasks else None

    def cancel(self, op: Cancel) -> None:
        """Cancels a task; the (changed, running) answer must be the model's."""
        task = self._task(op.task, op.state)
        if task is None:
            return
        expected = self.model.cancel(task, op.kill_running)
        assert self.run(self.fleet.tasks.cancel(task.task_id, op.kill_running)) == expected
        event(f"cancel: {task.state.name} kill={op.kill_running} changed={expected[0]}")

    def restart(self, op: Restart) -> None:
        """Restarts a task: a reservation is released at once, a confirmed run asked to stop."""
        task = self._task(op.task, op.state)
        if task is None:
            return
        holder = (task.run_id, task.bot_id)
        reserved = task.state is TaskState.RUNNING and task.reserved_until is not None
        expected = self.model.restart(task)
        if expected is None:
            with pytest.raises(Conflict):
                self.run(self.fleet.tasks.restart(task.task_id))
            return
        _, changed = self.run(self.fleet.tasks.restart(task.task_id))
        assert changed is expected
        event(f"restart: changed={changed} reserved={reserved}")
        if changed and reserved:
            self._handing(*holder).released = True

    def pause(self, op: Pause) -> None:
        """Pauses or resumes a task; whether it changed must be the model's."""
        task = self._task(op.task, op.state)
        if task is None:
            return
        expected = self.model.pause(task, not op.resume)
        service = self.fleet.tasks.resume if op.resume else self.fleet.tasks.pause
        _, changed = self.run(service(task.task_id))
        assert changed is expected
        event(f"{'resume' if op.resume else 'pause'}: {task.state.name} changed={changed}")

    def reprioritize(self, op: Reprioritize) -> None:
        """Changes a task's priority; anything but a pending task is a Conflict."""
        task = self._task(op.task, op.state)
        if task is None:
            return
        expected = self.model.reprioritize(task, op.priority)
        if expected is None:
            with pytest.raises(Conflict):
                self.run(self.fleet.tasks.reprioritize(task.task_id, op.priority))
            return
        _, changed = self.run(self.fleet.tasks.reprioritize(task.task_id, op.priority))
        assert changed is expected
        event(f"reprioritize: changed={changed}")

    # Bots.

    def bot_step(self, op: BotStep) -> None:
        """One bot acts according to its state.

        A dead bot comes back (handshake, remembering nothing). An idle bot
        polls; unless the action was "poll" (a stock bot confirms with its
        first update) it claims what it gets. A bot holding a run claims it,
        updates it, reports a task_error or dies, as the action says;
        "poll" makes it abandon the run and poll (it lost its state).
        "stale" makes it write to an older run of its, if it has one.
        """
        bot = self.bots[op.bot % len(self.bots)]
        if not bot.alive:
            bot.alive = True
            bot.drop_run()
            self.run(bot.handshake(self.fleet))
            self.model.saw_handshake(bot, self.clock.now())
            return
        if op.action == "die":
            bot.alive = False
            bot.drop_run()
            return
        if op.action == "stale" and set(bot.history) - {bot.run_id}:
            self.stale(bot, op)
            return
        if not bot.run_id or op.action == "poll":
            bot.drop_run()
            self.poll(bot)
            if bot.run_id and op.action != "poll":
                self.claim_own(bot, new_id=True)
            return
        if op.action.startswith("claim"):
            self.claim_own(bot, new_id=op.action == "claim")
        elif op.action.startswith("update:"):
            kind = op.action.removeprefix("update:")
            ok, _ = self.update(bot, bot.run_id, kind, op.output)
            if not ok or Completion.of(UPDATE_KINDS[kind]) is not None:
                bot.drop_run()
            else:
                bot.confirmed = True
        elif op.action.startswith("task_error"):
            self.task_error(bot, bot.run_id, client_error=op.action.endswith(":client"))
            bot.drop_run()

    def poll(self, bot: SimBot) -> None:
        """An idle bot polls: it gets the best task it can run (invariant 3), or sleeps."""
        now = self.clock.now()
        dims = self.model.saw_poll(bot, now)
        candidates = self.model.candidates(dims, now)
        reply = self.run(bot.poll(self.fleet))
        event(f"poll: {min(len(candidates), 3)} candidates")
        if not candidates:
            assert reply["cmd"] == "sleep", reply
            return
        assert reply["cmd"] == "run", (reply, candidates)
        run_id = reply["manifest"]["task_id"]
        task_id, try_number = ids.split_run_id(run_id)
        got = self.model.tasks[task_id]
        assert got in candidates, f"{task_id} is not a pending task that {bot.bot_id} can run"
        better = [
            c.task_id
            for c in candidates
            if (c.priority, c.created_ts) < (got.priority, got.created_ts)
        ]
        assert not better, f"{bot.bot_id} got {task_id} while {better} wait ahead of it"
        # Then the Store's tie-break on the task ID.
        assert got is min(candidates, key=lambda c: c.order)
        assert try_number == got.try_number + 1
        self.model.reserve(got, bot.bot_id, now)
        # Invariant 1: a run ID goes to a second bot only after an unconfirmed release.
        for earlier in self.handings.get(run_id, []):
            holding = f"run {run_id} handed to {bot.bot_id} while {earlier} holds it"
            assert earlier.released, holding
            assert not earlier.confirmed, holding
        self.handings.setdefault(run_id, []).append(Handing(bot.bot_id))
        bot.run_id, bot.confirmed = run_id, False
        bot.history.append(run_id)

    def claim_own(self, bot: SimBot, new_id: bool) -> None:
        """The bot claims the run it holds; a refusal makes it drop the run."""
        if self.claim(bot, bot.run_id, new_id):
            bot.confirmed = True
        else:
            bot.drop_run()

    def claim(self, bot: SimBot, run_id: str, new_id: bool) -> bool:
        """Sends a claim (with a new claim ID or the last one); True if the bot may run it."""
        if new_id or not bot.claims:
            bot.claims += 1
        claim_id = f"{bot.bot_id}-claim-{bot.claims}"
        task_id, try_number = ids.split_run_id(run_id)
        task = self.model.tasks[task_id]
        expect = self.model.claim(task, bot.bot_id, try_number, claim_id, self.clock.now())
        reply = self.run(bot.claim(self.fleet, run_id, claim_id))
        event(f"claim: {expect}")
        if expect:
            assert reply["cmd"] == "run", reply
            assert reply["task_id"] == run_id
            self._handing(run_id, bot.bot_id).confirmed = True
        else:
            assert reply["cmd"] == "skip", reply
        return expect

    def update(self, bot: SimBot, run_id: str, kind: str, with_output: bool) -> tuple[bool, bool]:
        """Sends a task_update and checks the answer, the fencing and the output."""
        now = self.clock.now()
        task_id, try_number = ids.split_run_id(run_id)
        task = self.model.tasks[task_id]
        live = task.state is TaskState.RUNNING and task.is_current(bot.bot_id, try_number)
        before = self.run(self.fleet.store.get_result(task_id))
        output = f"{kind}@{now:.0f}\n".encode() if with_output else b""
        body = bot.update_body(run_id, UPDATE_KINDS[kind], output)
        ok, must_stop = self.model.update(task, bot.bot_id, try_number, body, now)
        reply = self.run(bot.update(self.fleet, body))
        assert (reply["ok"], reply["must_stop"]) == (ok, must_stop), (reply, task)
        if ok and task.state is TaskState.RUNNING:
            # Our bot stops or continues the task's process by this flag.
            assert reply["paused"] is task.paused
        event(f"update: live={live} ok={ok} must_stop={must_stop} -> {task.state.name}")
        if ok and live:
            self._handing(run_id, bot.bot_id).confirmed = True
            if output:
                start = bot.offsets.get(run_id, 0)
                written = self.outputs.setdefault(run_id, bytearray())
                written[start : start + len(output)] = output
                bot.offsets[run_id] = start + len(output)
        else:
            # A refused or repeated update writes nothing at all.
            assert self.run(self.fleet.store.get_result(task_id)) == before
        stored = self.run(self.fleet.store.read_output(run_id))
        assert stored == bytes(self.outputs.get(run_id, b""))
        return ok, must_stop

    def task_error(self, bot: SimBot, run_id: str, client_error: bool) -> None:
        """Sends a task_error; one for a run that is not the bot's current one changes nothing."""
        task_id, try_number = ids.split_run_id(run_id)
        task = self.model.tasks[task_id]
        live = task.state is TaskState.RUNNING and task.is_current(bot.bot_id, try_number)
        before = self.run(self.fleet.store.get_result(task_id))
        self.model.error(task, bot.bot_id, try_number, client_error, self.clock.now())
        assert self.run(bot.task_error(self.fleet, run_id, client_error)) == {"resp": 1}
        event(f"task_error: live={live} -> {task.state.name}")
        if not live:
            assert self.run(self.fleet.store.get_result(task_id)) == before

    def stale(self, bot: SimBot, op: BotStep) -> None:
        """The bot writes to a run it was handed before and no longer believes it holds."""
        runs = sorted(set(bot.history) - {bot.run_id})
        run_id = runs[op.pick % len(runs)]
        action = STALE_ACTIONS[op.pick % len(STALE_ACTIONS)]
        if action == "claim":
            self.claim(bot, run_id, new_id=True)
        elif action == "task_error":
            self.task_error(bot, run_id, client_error=False)
        else:
            self.update(bot, run_id, action, op.output)

    # The clock.

    def to_deadline(self, op: ToDeadline) -> None:
        """Moves the clock to a task's next deadline (never backwards), then maybe sweeps."""
        dues = sorted({t.due for t in self.model.tasks.values() if t.due is not None})
        if dues:
            target = dues[op.pick % len(dues)] + op.offset
            if target > self.clock.now():
                self.clock.set(target)
        if op.sweep:
            self.sweep()

    def sweep(self) -> None:
        """Runs the sweeper once; checks its count and invariant 4."""
        now = self.clock.now()
        before = self.results()
        holders = {
            t.task_id: (t.run_id, t.bot_id)
            for t in self.model.tasks.values()
            if t.state is TaskState.RUNNING
        }
        changes = self.model.sweep(now)
        assert self.run(self.fleet.sweeper.run_once()) == len(changes)
        for _, what in changes:
            event(f"sweep: {what}")
        released = {t.task_id for t, what in changes if what.startswith("released")}
        for task_id in released:
            self._handing(*holders[task_id]).released = True
        for task_id, result in self.results().items():
            if result.state is TaskState.PENDING:
                request = self.run(self.fleet.store.get_request(task_id))
                assert request is not None
                deadlines = [request.slice_expiration_ts(i) for i in range(len(request.slices))]
                assert result.expiration_ts > now, f"{task_id} is past its deadline"
                if not self.model.tasks[task_id].requeued:
                    assert result.expiration_ts == deadlines[result.current_slice]
                    assert max(deadlines) > now, f"{task_id} is past every deadline"
            if result.state is TaskState.EXPIRED and before[task_id].state is TaskState.PENDING:
                assert before[task_id].expiration_ts <= now, f"{task_id} expired early"

    # Invariants.

    def results(self) -> dict[str, TaskResult]:
        """Every created task's stored result (invariant 2: none is missing)."""
        out: dict[str, TaskResult] = {}
        for task_id in self.model.tasks:
            result = self.run(self.fleet.store.get_result(task_id))
            assert result is not None, f"task {task_id} is lost"
            out[task_id] = result
        return out

    def check(self) -> None:
        """Invariants 1, 2, 5 and 6, and the model's prediction of every task."""
        results = self.results()
        listed = self.run(self.fleet.store.list_tasks(TaskQuery(limit=1000)))
        assert {r.task_id for r in listed.items} == set(self.model.tasks), "a task is lost"
        believed: dict[str, str] = {}
        for bot in self.bots:
            if bot.run_id and bot.confirmed:
                assert bot.run_id not in believed, f"{bot.bot_id} and {believed[bot.run_id]}"
                believed[bot.run_id] = bot.bot_id
        for task_id, result in results.items():
            task = self.model.tasks[task_id]
            assert view_of_result(result) == view_of_expected(task), task_id
            if result.state is TaskState.RUNNING:
                assert result.bot_id
                assert result.try_number >= 1
                holder = believed.get(result.run_id)
                assert holder in (None, result.bot_id), f"{holder} believes it runs {task_id}"
            if not result.state.is_active:
                first = self.finals.setdefault(task_id, result)
                assert result == first, f"final task {task_id} changed"
            if result.state is TaskState.EXPIRED:
                assert result.completed_ts is not None
                assert result.completed_ts >= result.expiration_ts
            if task.kill_requested:
                assert result.state in (TaskState.CANCELED, TaskState.KILLED) or (
                    result.state is TaskState.RUNNING and result.killing
                ), f"the kill of {task_id} was lost: {result.state.name}"

    def _handing(self, run_id: str, bot_id: str) -> Handing:
        return next(h for h in reversed(self.handings[run_id]) if h.bot_id == bot_id)


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
