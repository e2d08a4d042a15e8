"""The pure task transitions (server/scheduler/transitions.py), one rule at a time."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.botapi.messages import parse_task_update
from server.model import TaskProperties, TaskRequest, TaskResult, TaskSlice, TaskState
from server.scheduler import transitions
from server.scheduler.transitions import RunUpdate

NOW = 1_700_000_000.0
FINAL_STATES = [s for s in TaskState if not s.is_active]


def request(max_retries: int = 0, idempotent: bool = False) -> TaskRequest:
    """A two-slice request: slice 0 may wait 300 s, slice 1 900 s more."""
    return TaskRequest(
        task_id="65e8b6f0009e370",
        created_ts=NOW - 100,
        name="t",
        priority=20,
        slices=[
            TaskSlice(
                properties=TaskProperties(
                    command=["run"], dimensions=[("pool", "p")], idempotent=idempotent
                ),
                expiration_secs=secs,
            )
            for secs in (300, 900)
        ],
        max_retries=max_retries,
    )


def pending(**changes: object) -> TaskResult:
    """A task waiting in its queue."""
    result = TaskResult(
        task_id="65e8b6f0009e370",
        state=TaskState.PENDING,
        created_ts=NOW - 100,
        modified_ts=NOW - 100,
        priority=20,
        queue_key="q",
        expiration_ts=NOW + 500,
    )
    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]


def reserved(**changes: object) -> TaskResult:
    """A task just handed to bot1, not confirmed yet."""
    result = transitions.reserve(
        pending(),
        bot_id="bot1",
        bot_dimensions={"id": ["bot1"]},
        bot_version="v1",
        now=NOW,
        reserve_until=NOW + 60,
    )
    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]


def running(**changes: object) -> TaskResult:
    """A task bot1 confirmed and runs."""
    result = transitions.confirm(reserved(), now=NOW, tolerance_secs=60, claim_id="c1")
    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]


def update(result: TaskResult, run_update: RunUpdate) -> TaskResult:
    """Applies a bot's update a second later."""
    return transitions.apply_update(result, run_update, now=NOW + 1, tolerance_secs=60)


def test_false_timeout_flags_without_exit_code_are_not_a_completion() -> None:
    """The internal-failure final (false flags, no exit code) keeps the run going."""
    body = {"task_id": "65e8b6f0009e371", "io_timeout": False, "hard_timeout": False}
    run_update = parse_task_update(body).update
    assert not run_update.is_completion
    after = update(running(), run_update)
    assert after.state is TaskState.RUNNING
    assert after.dead_after_ts == NOW + 1 + 60


@pytest.mark.parametrize(
    "run_update",
    [
        RunUpdate(exit_code=0, duration=0.0),
        RunUpdate(canceled=True),
        RunUpdate(hard_timeout=True),
        RunUpdate(io_timeout=True),
    ],
)
def test_completion_is_decided_from_values(run_update: RunUpdate) -> None:
    """An exit code (even 0), `canceled` or a true timeout flag is a completion."""
    assert run_update.is_completion


def test_exit_code_completes_with_failure_from_its_value() -> None:
    """An exit code ends the run COMPLETED; a non-zero one marks it failed."""
    ok = update(running(), RunUpdate(exit_code=0, duration=2.0))
    failed = update(running(), RunUpdate(exit_code=3, duration=2.0))
    assert (ok.state, ok.failure, ok.completed_ts) == (TaskState.COMPLETED, False, NOW + 1)
    assert (failed.state, failed.failure, failed.exit_code) == (TaskState.COMPLETED, True, 3)
    assert ok.dead_after_ts is None


def test_timeout_flag_without_exit_code_times_out_with_exit_code_minus_one() -> None:
    """A true timeout flag alone ends the run TIMED_OUT with exit code -1."""
    after = update(running(), RunUpdate(io_timeout=True))
    assert (after.state, after.exit_code, after.failure) == (TaskState.TIMED_OUT, -1, True)


def test_killing_and_canceled_ends_canceled_without_exit_code() -> None:
    """A run being killed that reports `canceled` ends CANCELED, exit code and duration cleared."""
    after = update(running(killing=True), RunUpdate(canceled=True, exit_code=-9, duration=4.0))
    assert after.state is TaskState.CANCELED
    assert (after.exit_code, after.duration) == (None, None)


def test_killing_and_duration_ends_killed() -> None:
    """A run being killed that reports a duration ends KILLED, as a failure."""
    after = update(running(killing=True), RunUpdate(exit_code=-9, duration=4.0))
    assert (after.state, after.failure, after.exit_code) == (TaskState.KILLED, True, -9)


def test_killing_and_timeout_flag_alone_keeps_running() -> None:
    """A run being killed is not ended by a timeout flag without a duration."""
    after = update(running(killing=True), RunUpdate(hard_timeout=True))
    assert after.state is TaskState.RUNNING
    assert after.killing


def test_restart_of_a_confirmed_run_requeues_it_once_it_stops() -> None:
    """A restarted run is asked to stop; its end puts the task back in its queue, same try,
    waiting its slice's own expiration_secs again."""
    asked = transitions.restart(running(current_slice=1), now=NOW + 1)
    assert asked is not None
    assert (asked.state, asked.killing, asked.restarting) == (TaskState.RUNNING, True, True)
    stopped = update(asked, RunUpdate(exit_code=-9, duration=1.0))
    assert stopped.state is TaskState.KILLED
    requeued = transitions.settle_restart(stopped, request(), now=NOW + 2)
    assert requeued.state is TaskState.PENDING
    assert requeued.is_dispatchable
    assert (requeued.try_number, requeued.bot_id, requeued.completed_ts) == (1, "", None)
    assert (requeued.killing, requeued.restarting, requeued.expiration_ts) == (
        False,
        False,
        NOW + 2 + 900,
    )
    assert requeued.abandoned_ts is None


def test_restart_of_an_unconfirmed_run_releases_it_at_once() -> None:
    """A restarted reservation goes straight back to the queue and gives its try back."""
    after = transitions.restart(reserved(), now=NOW + 1)
    assert after is not None
    assert (after.state, after.try_number, after.bot_id) == (TaskState.PENDING, 0, "")
    assert transitions.restart(pending(), now=NOW + 1) is None


def test_restart_of_a_cancelled_reservation_queues_it_again() -> None:
    """A restart after a cancel wins: the unconfirmed run goes back to the queue, kill dropped."""
    after = transitions.restart(reserved(killing=True), now=NOW + 1)
    assert after is not None
    assert (after.state, after.killing, after.is_dispatchable) == (TaskState.PENDING, False, True)


def test_cancelled_reservation_that_times_out_ends_canceled() -> None:
    """A reservation cancelled before its bot confirmed it ends CANCELED when it times out,
    never pending again (the run never started)."""
    after = transitions.release(reserved(killing=True), now=NOW + 60)
    assert (after.state, after.is_dispatchable, after.completed_ts) == (
        TaskState.CANCELED,
        False,
        NOW + 60,
    )
    assert (after.exit_code, after.failure) == (None, False)


def test_release_gives_back_the_try_number() -> None:
    """A released reservation is pending again with the try number it had before."""
    first = reserved()
    assert first.try_number == 1
    after = transitions.release(first, now=NOW + 60)
    assert (after.state, after.try_number) == (TaskState.PENDING, 0)
    assert (after.bot_id, after.reserved_until, after.started_ts) == ("", None, None)
    assert after.is_dispatchable
    again = transitions.reserve(
        after, bot_id="bot2", bot_dimensions={}, bot_version="", now=NOW + 61, reserve_until=0
    )
    assert again.run_id == first.run_id


def test_bot_death_retries_or_ends_the_run() -> None:
    """A silent run is queued again with a retry left, else BOT_DIED; a killed one is KILLED."""
    retried = transitions.bot_died(running(), request(max_retries=1), now=NOW + 61)
    assert (retried.state, retried.try_number, retried.expiration_ts) == (
        TaskState.PENDING,
        1,
        NOW + 61 + 300,
    )
    died = transitions.bot_died(running(), request(), now=NOW + 61)
    assert (died.state, died.internal_failure) == (TaskState.BOT_DIED, True)
    killed = transitions.bot_died(running(killing=True), request(max_retries=1), now=NOW + 61)
    assert (killed.state, killed.exit_code) == (TaskState.KILLED, -1)


@pytest.mark.parametrize(
    ("try_number", "max_retries", "idempotent", "state"),
    [
        (1, 0, True, TaskState.PENDING),
        (2, 0, True, TaskState.BOT_DIED),
        (2, 2, False, TaskState.PENDING),
        (3, 2, False, TaskState.BOT_DIED),
    ],
)
def test_bot_death_retries_up_to_the_limit(
    try_number: int, max_retries: int, idempotent: bool, state: TaskState
) -> None:
    """A lost run is retried while its try number is within max_retries (one retry at least
    for an idempotent slice); past that it ends BOT_DIED."""
    died = transitions.bot_died(
        running(try_number=try_number), request(max_retries, idempotent), now=NOW + 61
    )
    assert (died.state, died.try_number) == (state, try_number)


def test_restarted_run_whose_bot_died_is_queued_again() -> None:
    """A run stopped for a restart that goes silent is queued again, retries or not."""
    asked = transitions.restart(running(), now=NOW + 1)
    assert asked is not None
    after = transitions.bot_died(asked, request(), now=NOW + 61)
    assert (after.state, after.restarting, after.expiration_ts) == (
        TaskState.PENDING,
        False,
        NOW + 61 + 300,
    )


@pytest.mark.parametrize(
    ("killing", "client_error", "state"),
    [
        (True, False, TaskState.KILLED),
        (False, True, TaskState.CLIENT_ERROR),
        (False, False, TaskState.BOT_DIED),
    ],
)
def test_task_error_ends_the_run(killing: bool, client_error: bool, state: TaskState) -> None:
    """A task_error ends the run KILLED if a kill was asked, else CLIENT_ERROR or BOT_DIED."""
    after = transitions.end_with_error(
        running(killing=killing), now=NOW + 1, message="m", client_error=client_error
    )
    assert (after.state, after.failure) == (state, True)
    assert after.internal_failure is (state is TaskState.BOT_DIED)


def test_cancel_ends_a_pending_task_and_asks_a_running_one_to_stop() -> None:
    """Cancel: pending becomes CANCELED; running gets `killing` only with kill_running."""
    canceled = transitions.cancel(pending(), now=NOW, kill_running=False)
    assert canceled is not None
    assert (canceled.state, canceled.is_dispatchable) == (TaskState.CANCELED, False)
    assert transitions.cancel(running(), now=NOW, kill_running=False) is None
    asked = transitions.cancel(running(), now=NOW, kill_running=True)
    assert asked is not None
    assert (asked.state, asked.killing) == (TaskState.RUNNING, True)
    assert transitions.cancel(asked, now=NOW, kill_running=True) is None


def test_repeated_final_update_is_recognised() -> None:
    """The same exit code and duration again is a retry of the final update; others are not."""
    done = update(running(), RunUpdate(exit_code=0, duration=2.0))
    assert transitions.is_same_completion(done, RunUpdate(exit_code=0, duration=2.0))
    assert not transitions.is_same_completion(done, RunUpdate(exit_code=1, duration=2.0))
    assert not transitions.is_same_completion(running(), RunUpdate(exit_code=0, duration=2.0))


run_updates = st.builds(
    RunUpdate,
    cost_usd=st.none() | st.floats(0, 10),
    exit_code=st.none() | st.integers(-20, 3),
    duration=st.none() | st.floats(0, 100),
    hard_timeout=st.booleans(),
    io_timeout=st.booleans(),
    canceled=st.booleans(),
)


@given(run_update=run_updates)
def test_an_update_ends_a_run_not_being_killed_iff_it_is_a_completion(
    run_update: RunUpdate,
) -> None:
    """Without a pending kill, exactly the completions end the run, and in a final state."""
    after = update(running(), run_update)
    assert after.state.is_active is not run_update.is_completion
    assert after.state is not TaskState.PENDING


@given(state=st.sampled_from(FINAL_STATES), kill_running=st.booleans())
def test_a_final_task_refuses_every_control_change(state: TaskState, kill_running: bool) -> None:
    """Cancel, pause, resume, restart and reprioritize change nothing on a finished task,
    even one that ended while paused."""
    final = running(state=state)
    assert transitions.cancel(final, now=NOW, kill_running=kill_running) is None
    assert transitions.pause(final, now=NOW) is None
    assert transitions.resume(dataclasses.replace(final, paused=True), now=NOW) is None
    assert transitions.restart(final, now=NOW) is None
    assert transitions.reprioritize(final, now=NOW, priority=1) is None
    assert transitions.settle_restart(final, request(), now=NOW) == final


def test_every_way_of_ending_clears_paused() -> None:
    """A task that ends while paused is never stored paused: completions, timeouts, kills,
    task_error, cancel, expiry, a cancelled reservation and bot death all clear the flag."""
    paused_run = running(paused=True)
    ends = [
        update(paused_run, RunUpdate(exit_code=0, duration=1.0)),
        update(paused_run, RunUpdate(hard_timeout=True)),
        update(paused_run, RunUpdate(canceled=True)),
        update(running(paused=True, killing=True), RunUpdate(exit_code=-9, duration=1.0)),
        transitions.end_with_error(paused_run, now=NOW, message="m", client_error=False),
        transitions.end_with_error(paused_run, now=NOW, message="m", client_error=True),
        transitions.cancel(pending(paused=True), now=NOW, kill_running=False),
        transitions.expire(pending(paused=True), now=NOW),
        transitions.release(reserved(paused=True, killing=True), now=NOW),
        transitions.bot_died(paused_run, request(), now=NOW),
        transitions.bot_died(running(paused=True, killing=True), request(), now=NOW),
    ]
    for ended in ends:
        assert ended is not None
        assert not ended.state.is_active, ended.state
        assert ended.paused is False, ended.state
