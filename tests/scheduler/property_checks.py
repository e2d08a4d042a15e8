"""What the property test (tests/scheduler/test_properties.py) checks of every task.

After each operation, `check_tasks` compares each stored result with the
model's prediction (`view` picks the fields the model predicts) and checks
the invariants about running, ended, expired and killed tasks that the
test's docstring lists; tests/scheduler/property_driver.py calls it with
what it tracked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from server.model import TaskResult, TaskState
from tests.scheduler.lifecycle_model import Expected, Model
from tests.scheduler.model_driver import SimBot


def view(task: TaskResult | Expected) -> dict[str, object]:
    """The fields the model predicts, of a stored result or of the model's task."""
    running = task.state is TaskState.RUNNING
    return {
        "state": task.state.name,
        "try_number": task.try_number,
        "bot_id": task.bot_id,
        "current_slice": task.current_slice,
        "killing": task.killing,
        "restarting": task.restarting,
        "exit_code": task.exit_code,
        "duration": task.duration,
        "expiration_ts": task.expiration_ts if task.state is TaskState.PENDING else None,
        "reserved_until": task.reserved_until if running else None,
        "dead_after_ts": task.dead_after_ts if running else None,
        "claim_id": task.claim_id if running else None,
        # An ended task is never paused, whatever it was when it ended.
        "paused": task.paused,
        "priority": task.priority,
    }


def check_tasks(
    results: Mapping[str, TaskResult],
    model: Model,
    bots: Sequence[SimBot],
    finals: dict[str, TaskResult],
) -> None:
    """Invariants 1, 5 and 6 and the model's prediction, for every stored result.

    `finals` keeps the first ended record seen of each task, which must
    never change afterwards.
    """
    believed: dict[str, str] = {}
    for bot in bots:
        if bot.run_id and bot.confirmed:
            assert bot.run_id not in believed, f"{bot.bot_id} and {believed[bot.run_id]}"
            believed[bot.run_id] = bot.bot_id
    for task_id, result in results.items():
        task = model.tasks[task_id]
        assert view(result) == view(task), task_id
        if result.state is TaskState.RUNNING:
            assert result.bot_id
            assert result.try_number >= 1
            holder = believed.get(result.run_id)
            assert holder in (None, result.bot_id), f"{holder} believes it runs {task_id}"
        if not result.state.is_active:
            first = finals.setdefault(task_id, result)
            assert result == first, f"final task {task_id} changed"
        if result.state is TaskState.EXPIRED:
            assert result.completed_ts is not None
            assert result.completed_ts >= result.expiration_ts
        if task.kill_requested:
            assert result.state in (TaskState.CANCELED, TaskState.KILLED) or (
                result.state is TaskState.RUNNING and result.killing
            ), f"the kill of {task_id} was lost: {result.state.name}"
