"""Applies the property test's operations to the real services and to the model.

`Driver` runs one example of tests/scheduler/test_properties.py: each
operation (tests/scheduler/operations.py) goes to the real services
(tests/scheduler/model_driver.py) and to the model
(tests/scheduler/lifecycle_model.py), and `check` compares them and checks
the invariants the test's docstring lists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import tempfile
import unittest.mock
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import event

from server import ids
from server.clock import FakeClock
from server.errors import Conflict
from server.model import TaskQuery, TaskResult, TaskState
from tests.scheduler.lifecycle_model import Completion, Expected, Model
from tests.scheduler.model_driver import Fleet, SimBot, TaskIds, TaskSpec
from tests.scheduler.operations import (
    STALE_ACTIONS,
    UPDATE_KINDS,
    Advance,
    BotStep,
    Cancel,
    Create,
    Operation,
    Pause,
    Reprioritize,
    Restart,
    ToDeadline,
)
from tests.scheduler.property_checks import check_tasks

T = TypeVar("T")


@dataclasses.dataclass
class Handing:
    """A `run` answer: which bot got a run ID, and what became of that reservation."""

    bot_id: str
    confirmed: bool = False
    released: bool = False


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
        listed = self.run(self.fleet.store.list_tasks(TaskQuery(limit=1000)))
        assert {r.task_id for r in listed.items} == set(self.model.tasks), "a task is lost"
        check_tasks(self.results(), self.model, self.bots, self.finals)

    def _handing(self, run_id: str, bot_id: str) -> Handing:
        return next(h for h in reversed(self.handings[run_id]) if h.bot_id == bot_id)
