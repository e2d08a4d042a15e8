"""An independent statement of the task lifecycle, to predict what the scheduler must do.

`Model` follows PROTOCOL.md 1.8 and DESIGN.md 5-6 without sharing code with
the server: tests/scheduler/test_properties.py applies each operation to the
real services (tests/scheduler/model_driver.py) and to the model, and
compares the stored tasks with the model's `Expected` ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from server.model import TaskState, run_id_of
from tests.scheduler.model_driver import (
    BOT_DEATH_TIMEOUT_SECS,
    GROUP_DIMENSIONS,
    RESERVATION_TIMEOUT_SECS,
    SimBot,
    TaskSpec,
)


def dims_match(bot: Mapping[str, Sequence[str]], requested: Sequence[tuple[str, str]]) -> bool:
    """Every requested key has one of its `|` alternatives among the bot's values."""
    return all(any(alt in bot.get(k, ()) for alt in v.split("|")) for k, v in requested)


@dataclasses.dataclass(frozen=True)
class Completion:
    """The completion fields of a task_update body, decided from values (U3)."""

    exit_code: int | None
    duration: float | None
    hard_timeout: bool
    io_timeout: bool
    canceled: bool

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Completion | None:
        """None when the body is not a completion."""
        done = cls(
            exit_code=body.get("exit_code"),
            duration=body.get("duration"),
            hard_timeout=body.get("hard_timeout") is True,
            io_timeout=body.get("io_timeout") is True,
            canceled=body.get("canceled") is True,
        )
        if done.exit_code is None and not (done.hard_timeout or done.io_timeout or done.canceled):
            return None
        return done


@dataclasses.dataclass
class Expected:
    """What one task's stored result must say."""

    task_id: str
    spec: TaskSpec
    created_ts: float
    state: TaskState
    current_slice: int = 0
    expiration_ts: float = 0.0
    try_number: int = 0
    bot_id: str = ""
    reserved_until: float | None = None
    claim_id: str = ""
    dead_after_ts: float | None = None
    killing: bool = False
    restarting: bool = False
    exit_code: int | None = None
    duration: float | None = None
    paused: bool = False
    # The task's priority, the request's until a reprioritize.
    priority: int = 0
    # A retry or a restart gave the task a fresh expiration.
    requeued: bool = False
    # A cancel asked the running task to stop (a restart after it withdraws it).
    kill_requested: bool = False

    def deadline(self, index: int) -> float:
        """Slice `index`'s cumulative expiration."""
        return self.created_ts + sum(s.expiration_secs for s in self.spec.slices[: index + 1])

    @property
    def run_id(self) -> str:
        """The current run's ID."""
        return run_id_of(self.task_id, self.try_number or 1)

    @property
    def due(self) -> float | None:
        """When the sweeper must next look at the task."""
        if self.state is TaskState.PENDING:
            return self.expiration_ts
        if self.state is TaskState.RUNNING:
            times = [t for t in (self.reserved_until, self.dead_after_ts) if t is not None]
            return min(times, default=None)
        return None

    @property
    def order(self) -> tuple[int, float, str]:
        """Claim order within the queues: priority, age, task ID."""
        return (self.priority, self.created_ts, self.task_id)

    def is_current(self, bot_id: str, try_number: int) -> bool:
        """The run is this bot's try `try_number`."""
        return self.bot_id == bot_id and self.try_number == try_number

    def finish(self, state: TaskState) -> None:
        """Ends the task in `state`; an ended task is not paused."""
        self.state = state
        self.reserved_until = None
        self.dead_after_ts = None
        self.paused = False


@dataclasses.dataclass
class BotRecord:
    """What the server stored about a bot."""

    dimensions: dict[str, list[str]]
    last_seen: float


class Model:
    """Predicts the scheduler's task states from the operations applied to it."""

    def __init__(self) -> None:
        self.tasks: dict[str, Expected] = {}
        self.bots: dict[str, BotRecord] = {}

    # Bots.

    def saw_handshake(self, bot: SimBot, now: float) -> None:
        """A handshake keeps the last polled dimensions (none yet: only forced ones)."""
        old = self.bots.get(bot.bot_id)
        dims = dict(old.dimensions) if old else {}
        dims.update(GROUP_DIMENSIONS)
        dims["id"] = [bot.bot_id]
        self.bots[bot.bot_id] = BotRecord(dimensions=dims, last_seen=now)

    def saw_poll(self, bot: SimBot, now: float) -> dict[str, list[str]]:
        """A poll stores the reported dimensions with the forced ones on top."""
        dims = {**bot.dimensions, **GROUP_DIMENSIONS, "id": [bot.bot_id]}
        self.bots[bot.bot_id] = BotRecord(dimensions=dims, last_seen=now)
        return dims

    def has_capacity(self, requested: Sequence[tuple[str, str]], now: float) -> bool:
        """A bot seen within the death timeout matches `requested`."""
        return any(
            b.last_seen >= now - BOT_DEATH_TIMEOUT_SECS and dims_match(b.dimensions, requested)
            for b in self.bots.values()
        )

    # Tasks.

    def first_runnable(self, task: Expected, start: int, now: float) -> int | None:
        """The first slice from `start` that has not expired and may wait or has a bot."""
        for index in range(start, len(task.spec.slices)):
            s = task.spec.slices[index]
            if task.deadline(index) > now and (
                s.wait_for_capacity or self.has_capacity(s.pairs, now)
            ):
                return index
        return None

    def create(self, task_id: str, spec: TaskSpec, now: float) -> Expected:
        """A new task waits on its first runnable slice, or is NO_RESOURCE."""
        task = Expected(
            task_id=task_id,
            spec=spec,
            created_ts=now,
            state=TaskState.PENDING,
            priority=spec.priority,
        )
        index = self.first_runnable(task, 0, now)
        if index is None:
            task.finish(TaskState.NO_RESOURCE)
        else:
            task.current_slice = index
            task.expiration_ts = task.deadline(index)
        self.tasks[task_id] = task
        return task

    def candidates(self, dims: Mapping[str, Sequence[str]], now: float) -> list[Expected]:
        """Pending, unpaused, unexpired tasks whose current slice a bot with `dims` can run."""
        return [
            t
            for t in self.tasks.values()
            if t.state is TaskState.PENDING
            and not t.paused
            and t.expiration_ts > now
            and dims_match(dims, t.spec.slices[t.current_slice].pairs)
        ]

    def reserve(self, task: Expected, bot_id: str, now: float) -> None:
        """The task is handed to `bot_id` as a new, unconfirmed try."""
        task.state = TaskState.RUNNING
        task.try_number += 1
        task.bot_id = bot_id
        task.reserved_until = now + RESERVATION_TIMEOUT_SECS
        task.dead_after_ts = None
        task.claim_id = ""
        task.killing = False
        task.exit_code = task.duration = None

    def _confirm(self, task: Expected, now: float, claim_id: str) -> None:
        task.reserved_until = None
        task.claim_id = claim_id
        task.dead_after_ts = now + task.spec.bot_ping_tolerance_secs

    def claim(
        self, task: Expected, bot_id: str, try_number: int, claim_id: str, now: float
    ) -> bool:
        """Confirms the bot's reservation; True when the bot may run it.

        A claim of a run cancelled before it started ends it CANCELED; a
        repeated claim changes nothing and succeeds only with the same ID.
        """
        if task.state is TaskState.RUNNING and task.is_current(bot_id, try_number):
            if task.killing and task.reserved_until is not None:
                task.finish(TaskState.CANCELED)
                return False
            if task.reserved_until is not None or not task.claim_id:
                self._confirm(task, now, claim_id)
        return (
            task.state is TaskState.RUNNING
            and task.is_current(bot_id, try_number)
            and task.claim_id == claim_id
        )

    def update(
        self, task: Expected, bot_id: str, try_number: int, body: Mapping[str, Any], now: float
    ) -> tuple[bool, bool]:
        """Applies a task_update; returns the (ok, must_stop) the bot must get."""
        done = Completion.of(body)
        if not task.is_current(bot_id, try_number):
            return False, True
        if task.state is not TaskState.RUNNING:
            same = (
                done is not None
                and (task.exit_code == done.exit_code or task.state is TaskState.CANCELED)
                and (task.duration == done.duration or task.state is TaskState.CANCELED)
            )
            return (True, False) if same else (False, True)
        if task.reserved_until is not None:
            self._confirm(task, now, task.claim_id)
        task.dead_after_ts = now + task.spec.bot_ping_tolerance_secs
        if done is not None:
            self._complete(task, done)
            self._settle_restart(task, now)
        return True, task.state is TaskState.RUNNING and task.killing

    def _complete(self, task: Expected, done: Completion) -> None:
        """PROTOCOL.md 1.8: the end state a completion leads to."""
        if task.killing:
            if done.canceled:
                end: TaskState | None = TaskState.CANCELED
            elif done.duration is not None:
                end = TaskState.KILLED
            else:
                end = None
        elif done.hard_timeout or done.io_timeout:
            end = TaskState.TIMED_OUT
        elif done.canceled:
            end = TaskState.CANCELED
        else:
            end = TaskState.COMPLETED
        if end is None:
            return
        task.finish(end)
        task.exit_code, task.duration = done.exit_code, done.duration
        if end is TaskState.TIMED_OUT and done.exit_code is None:
            task.exit_code = -1
        if end is TaskState.CANCELED:
            task.exit_code = task.duration = None

    def error(
        self, task: Expected, bot_id: str, try_number: int, client_error: bool, now: float
    ) -> None:
        """A task_error ends the bot's current run; anything else is ignored."""
        if task.state is not TaskState.RUNNING or not task.is_current(bot_id, try_number):
            return
        if task.killing:
            task.finish(TaskState.KILLED)
        else:
            task.finish(TaskState.CLIENT_ERROR if client_error else TaskState.BOT_DIED)
        self._settle_restart(task, now)

    def cancel(self, task: Expected, kill_running: bool) -> tuple[bool, bool]:
        """Returns (changed, running) as TaskService.cancel must."""
        if task.state is TaskState.PENDING:
            task.finish(TaskState.CANCELED)
            return True, False
        running = task.state is TaskState.RUNNING
        if running and kill_running and not task.killing:
            task.killing = task.kill_requested = True
            return True, True
        return False, running

    def restart(self, task: Expected) -> bool | None:
        """Stops the run to queue the task again; None when refused (ended, out of tries).

        An unconfirmed reservation is released at once; a confirmed run is
        asked to stop and its end queues the task (`_settle_restart`).
        """
        if not task.state.is_active:
            return None
        # A run ID carries its try number in one hex digit: no 16th try.
        last_try = task.try_number >= 15 and task.reserved_until is None
        if task.state is TaskState.RUNNING and last_try:
            return None
        if task.state is not TaskState.RUNNING or task.restarting:
            return False
        task.kill_requested = False
        if task.reserved_until is not None:
            self._release(task)
            task.paused = False
        else:
            task.killing = task.restarting = True
        return True

    def pause(self, task: Expected, paused: bool) -> bool:
        """Pauses an active task or resumes a paused one; True when that changed it.

        A task that ended (paused or not) is never changed again.
        """
        if paused == task.paused or not task.state.is_active:
            return False
        task.paused = paused
        return True

    def reprioritize(self, task: Expected, priority: int) -> bool | None:
        """A pending task takes `priority`; None (refused) unless it is pending."""
        if task.state is not TaskState.PENDING:
            return None
        changed = task.priority != priority
        task.priority = priority
        return changed

    def _settle_restart(self, task: Expected, now: float) -> None:
        """A restarted run that ended queues the task again, waiting its slice's time anew."""
        if not task.restarting or task.state.is_active:
            return
        task.state = TaskState.PENDING
        task.bot_id = ""
        task.killing = task.restarting = task.paused = False
        task.expiration_ts = now + task.spec.slices[task.current_slice].expiration_secs
        task.requeued = True

    def _release(self, task: Expected) -> None:
        """The unconfirmed run is undone: the task is pending again, its try given back."""
        task.state = TaskState.PENDING
        task.try_number -= 1
        task.bot_id = ""
        task.killing = False
        task.reserved_until = task.dead_after_ts = None

    def sweep(self, now: float) -> list[tuple[Expected, str]]:
        """Every task due by `now` goes through each deadline that passed, in one change.

        Returns (task, what happened, "+"-joined) per task that changed; a
        task released past its expiration, for example, is "released+expired".
        """
        changes: list[tuple[Expected, str]] = []
        for task in self.tasks.values():
            steps: list[str] = []
            while task.due is not None and task.due <= now:
                # Each step leaves the task final or due later, or pending past
                # its expiration (a release), which the next step settles.
                assert len(steps) < 2, f"{task.task_id} is still due after {steps}"
                steps.append(self._sweep_one(task, now))
            if steps:
                changes.append((task, "+".join(steps)))
        return changes

    def _sweep_one(self, task: Expected, now: float) -> str:
        if task.state is TaskState.PENDING:
            index = self.first_runnable(task, task.current_slice + 1, now)
            if index is None:
                task.finish(TaskState.EXPIRED)
                return "expired"
            task.current_slice = index
            task.expiration_ts = task.deadline(index)
            return "next_slice"
        if task.reserved_until is not None and task.reserved_until <= now:
            if task.killing:
                # Cancelled before the bot confirmed it: it never runs.
                task.finish(TaskState.CANCELED)
                return "canceled"
            self._release(task)
            return "released"
        if task.killing:
            task.finish(TaskState.KILLED)
            task.exit_code = -1
            self._settle_restart(task, now)
            return "requeued" if task.state.is_active else "killed"
        if task.try_number <= task.spec.max_retries:
            task.state = TaskState.PENDING
            task.bot_id = ""
            task.dead_after_ts = None
            task.paused = False
            task.expiration_ts = now + task.spec.slices[task.current_slice].expiration_secs
            task.requeued = True
            return "retried"
        task.finish(TaskState.BOT_DIED)
        return "bot_died"
