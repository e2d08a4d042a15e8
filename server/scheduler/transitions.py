"""Pure state transitions of a task result.

Each function takes the stored TaskResult and returns the new one (or None
when nothing changes); callers persist it with a compare-and-set. Keeping
these pure makes the lifecycle easy to test exhaustively.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from server.ids import MAX_TRIES
from server.model import BotDimensions, TaskRequest, TaskResult, TaskState, evolve


@dataclasses.dataclass(frozen=True)
class RunUpdate:
    """What a bot reports in a task_update (PROTOCOL.md 1.8), parsed."""

    cost_usd: float | None = None
    exit_code: int | None = None
    duration: float | None = None
    hard_timeout: bool = False
    io_timeout: bool = False
    bot_overhead: float | None = None
    canceled: bool = False

    @property
    def is_completion(self) -> bool:
        """Decided from values, not key presence (PROTOCOL.md 0.2.7 U3)."""
        return self.exit_code is not None or self.canceled or self.hard_timeout or self.io_timeout


def reserve(
    result: TaskResult,
    *,
    bot_id: str,
    bot_dimensions: BotDimensions,
    bot_version: str,
    now: float,
    reserve_until: float,
) -> TaskResult:
    """A poll hands the task to a bot: a new run, reserved until confirmed."""
    return evolve(
        result,
        state=TaskState.RUNNING,
        try_number=result.try_number + 1,
        bot_id=bot_id,
        bot_dimensions=bot_dimensions,
        bot_version=bot_version,
        started_ts=now,
        modified_ts=now,
        reserved_until=reserve_until,
        dead_after_ts=None,
        claim_id="",
        killing=False,
        cost_usd=0.0,
        exit_code=None,
        duration=None,
        hard_timeout=False,
        io_timeout=False,
        failure=False,
        internal_failure=False,
        error="",
    )


def confirm(result: TaskResult, *, now: float, tolerance_secs: int, claim_id: str) -> TaskResult:
    """The bot confirmed its reservation (claim, or a stock bot's first update)."""
    return evolve(
        result,
        reserved_until=None,
        claim_id=claim_id,
        dead_after_ts=now + tolerance_secs,
        modified_ts=now,
    )


def apply_update(
    result: TaskResult, update: RunUpdate, *, now: float, tolerance_secs: int
) -> TaskResult:
    """Applies a running run's update: liveness, cost and, if final, its end state."""
    changes: dict[str, object] = {
        "dead_after_ts": now + tolerance_secs,
        "modified_ts": now,
    }
    if update.cost_usd is not None:
        changes["cost_usd"] = max(result.cost_usd, update.cost_usd)
    if update.is_completion:
        end = _end_state(result, update)
        if end is not None:
            changes.update(
                state=end,
                completed_ts=now,
                dead_after_ts=None,
                paused=False,
                exit_code=update.exit_code,
                duration=update.duration,
                hard_timeout=update.hard_timeout,
                io_timeout=update.io_timeout,
            )
            if end is TaskState.COMPLETED:
                changes["failure"] = update.exit_code != 0
            elif end is TaskState.TIMED_OUT:
                changes["failure"] = True
                if update.exit_code is None:
                    changes["exit_code"] = -1
            elif end is TaskState.CANCELED:
                changes.update(exit_code=None, duration=None)
            elif end is TaskState.KILLED:
                changes["failure"] = True
    return evolve(result, **changes)


def _end_state(result: TaskResult, update: RunUpdate) -> TaskState | None:
    """The final state a completion leads to; None keeps the run going."""
    if result.killing:
        if update.canceled:
            return TaskState.CANCELED
        if update.duration is not None:
            return TaskState.KILLED
        return None
    if update.hard_timeout or update.io_timeout:
        return TaskState.TIMED_OUT
    if update.canceled:
        return TaskState.CANCELED
    return TaskState.COMPLETED


def is_same_completion(result: TaskResult, update: RunUpdate) -> bool:
    """True when a final update repeats the one that ended the run (a retry)."""
    return (
        not result.state.is_active
        and update.is_completion
        and (result.exit_code == update.exit_code or result.state is TaskState.CANCELED)
        and (result.duration == update.duration or result.state is TaskState.CANCELED)
    )


def end_with_error(
    result: TaskResult, *, now: float, message: str, client_error: bool
) -> TaskResult:
    """A task_error ends the run: KILLED if a kill was pending, else CLIENT_ERROR or BOT_DIED."""
    if result.killing:
        state = TaskState.KILLED
    elif client_error:
        state = TaskState.CLIENT_ERROR
    else:
        state = TaskState.BOT_DIED
    return _end(
        result,
        state,
        now,
        internal_failure=state is TaskState.BOT_DIED,
        failure=True,
        error=message,
    )


def cancel(result: TaskResult, *, now: float, kill_running: bool) -> TaskResult | None:
    """Cancels a pending task at once, or asks a running one to stop; None if neither."""
    if result.state is TaskState.PENDING:
        return _end(result, TaskState.CANCELED, now)
    if result.state is TaskState.RUNNING and kill_running and not result.killing:
        return evolve(result, killing=True, modified_ts=now)
    return None


def next_slice(
    result: TaskResult, request: TaskRequest, *, now: float, index: int, queue_key: str
) -> TaskResult:
    """The task waits in the queue of slice `index`, until that slice's cumulative expiration."""
    return evolve(
        result,
        current_slice=index,
        queue_key=queue_key,
        expiration_ts=request.slice_expiration_ts(index),
        modified_ts=now,
    )


def expire(result: TaskResult, *, now: float) -> TaskResult:
    """No slice was picked up in time."""
    return _end(result, TaskState.EXPIRED, now)


def release(result: TaskResult, *, now: float) -> TaskResult:
    """An unconfirmed reservation timed out: the task goes back to its queue.

    A task cancelled meanwhile ends CANCELED instead: its bot never started
    it, and nobody else may (PROTOCOL.md 4.9).
    """
    if result.killing:
        return cancel_unstarted(result, now=now)
    return _unreserve(result, now=now)


def cancel_unstarted(result: TaskResult, *, now: float) -> TaskResult:
    """A run cancelled before its bot confirmed it ends CANCELED, without ever running."""
    return _end(result, TaskState.CANCELED, now)


def _unreserve(result: TaskResult, *, now: float) -> TaskResult:
    """The reservation is undone and the task is pending again.

    The try number goes back too, so the run that never started leaves no
    trace, and its run ID goes to the next bot. Only an unconfirmed run
    gives its try back: a confirmed run's ID stays its bot's for good,
    which is what lets task_update write output under it
    (server/botapi/runs.py).
    """
    return evolve(
        result,
        state=TaskState.PENDING,
        try_number=result.try_number - 1,
        bot_id="",
        bot_dimensions={},
        bot_version="",
        started_ts=None,
        reserved_until=None,
        dead_after_ts=None,
        killing=False,
        modified_ts=now,
    )


def allowed_retries(request: TaskRequest, result: TaskResult) -> int:
    """How many times a run lost with its bot is retried: the request's count,
    at least once for an idempotent slice (running it again is harmless)."""
    idempotent = request.slices[result.current_slice].properties.idempotent
    return min(max(request.max_retries, 1 if idempotent else 0), MAX_TRIES - 1)


def bot_died(result: TaskResult, request: TaskRequest, *, now: float) -> TaskResult:
    """The run missed its updates: KILLED if a kill was pending, else a new try or BOT_DIED.

    A run stopped for a restart is queued again whatever its retries; other
    runs are retried while `allowed_retries` says so.
    """
    if result.killing:
        killed = _end(result, TaskState.KILLED, now, exit_code=-1, failure=True)
        return settle_restart(killed, request, now=now)
    if result.try_number <= allowed_retries(request, result):
        return requeue(result, request, now=now)
    return _end(
        result,
        TaskState.BOT_DIED,
        now,
        internal_failure=True,
        failure=True,
        error="the bot stopped sending updates",
    )


def requeue(result: TaskResult, request: TaskRequest, *, now: float) -> TaskResult:
    """The task goes back to its queue for a new try (a restart, or a retry after BOT_DIED).

    It waits on the slice it ran, for that slice's own expiration_secs from
    now: the cumulative deadline of its creation may be long past.
    """
    return evolve(
        result,
        state=TaskState.PENDING,
        bot_id="",
        bot_dimensions={},
        started_ts=None,
        completed_ts=None,
        abandoned_ts=None,
        dead_after_ts=None,
        reserved_until=None,
        killing=False,
        restarting=False,
        paused=False,
        expiration_ts=now + request.slices[result.current_slice].expiration_secs,
        modified_ts=now,
    )


def pause(result: TaskResult, *, now: float) -> TaskResult | None:
    """Pauses an active task; None if it is final or paused already."""
    if not result.state.is_active or result.paused:
        return None
    return evolve(result, paused=True, modified_ts=now)


def resume(result: TaskResult, *, now: float) -> TaskResult | None:
    """Resumes a paused task; None if it is not paused, or has ended (a final record stays)."""
    if not result.paused or not result.state.is_active:
        return None
    return evolve(result, paused=False, modified_ts=now)


def restart(result: TaskResult, *, now: float) -> TaskResult | None:
    """Stops the current run and queues the task again; None for a pending task.

    A run the bot has not confirmed yet is released at once; a confirmed one
    is asked to stop, and its end puts the task back in its queue.
    """
    if result.state is not TaskState.RUNNING or result.restarting or is_out_of_tries(result):
        return None
    if result.reserved_until is not None:
        # A restart wins over an earlier cancel: the task runs again.
        return evolve(_unreserve(result, now=now), paused=False)
    return evolve(result, killing=True, restarting=True, modified_ts=now)


def is_out_of_tries(result: TaskResult) -> bool:
    """True when a restart would need a try past MAX_TRIES, which no run ID can carry.

    A run ID's last hex digit is its try number (PROTOCOL.md 4.2). An
    unconfirmed run gives its try back when released, so only a confirmed
    run of the last try is out of tries.
    """
    return (
        result.state is TaskState.RUNNING
        and result.reserved_until is None
        and result.try_number >= MAX_TRIES
    )


def reprioritize(result: TaskResult, *, now: float, priority: int) -> TaskResult | None:
    """Changes a pending task's priority (its place in its queue follows)."""
    if result.state is not TaskState.PENDING or result.priority == priority:
        return None
    return evolve(result, priority=priority, modified_ts=now)


def settle_restart(result: TaskResult, request: TaskRequest, *, now: float) -> TaskResult:
    """A run stopped for a restart ends by queueing the task again, not in a final state."""
    if result.restarting and not result.state.is_active:
        return requeue(result, request, now=now)
    return result


def _end(result: TaskResult, state: TaskState, now: float, **changes: Any) -> TaskResult:
    """Ends the task in a final state the bot did not report (it was abandoned).

    The queue key stays: a restart queues the task again in the same queue.
    An ended task is never shown paused, whatever it was when it ended.
    """
    return evolve(
        result,
        state=state,
        completed_ts=now,
        abandoned_ts=now,
        dead_after_ts=None,
        reserved_until=None,
        paused=False,
        modified_ts=now,
        **changes,
    )
