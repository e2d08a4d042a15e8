"""Batch operations by tag selector: cancel, pause, resume, restart, reprioritize, retry.

One path serves them all (`BatchService.run`): select the tasks carrying
every tag of the selector, keep those the operation would change now, check
that the caller may change each of them (`admit`: pools.cfg ACLs), and only
then apply the single-task operation to each in turn. Whether a task would
change is decided by the same pure transition that the change applies
(server/scheduler/transitions.py), so a dry run lists exactly what the real
run changes, unless something else changes those tasks in between; the real
run reports only the tasks it did change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from server.clock import Clock
from server.errors import Conflict, InvalidRequest, TaskNotFound
from server.model import TaskQuery, TaskResult, TaskState
from server.scheduler import transitions
from server.scheduler.tasks import MAX_PAGE, MAX_SELECTION, RETRY_TAG, TaskService

# One batch changes at most this many tasks (like Swarming's CancelTasks).
MAX_BATCH = 1000

ACTIVE = frozenset({TaskState.PENDING, TaskState.RUNNING})
FINAL = frozenset(TaskState) - ACTIVE

# Raises unless the caller may change the task with this ID.
Admit = Callable[[str], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Operation:
    """One kind of batch change."""

    # The states of the tasks it may change (narrows the selection in the Store).
    states: frozenset[TaskState]
    # Whether it would change this task now: the check its change makes.
    would_change: Callable[[TaskResult], Awaitable[bool]]
    # Changes one task: (whether it changed, the task it created or "").
    apply: Callable[[str], Awaitable[tuple[bool, str]]]


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    """The tasks changed (or that would be, in a dry run), newest first, and for a
    retry the new task of each, in the same order."""

    task_ids: list[str]
    new_task_ids: list[str]


class BatchService:
    """Builds the operations and runs them over a tag selector."""

    def __init__(self, tasks: TaskService, clock: Clock) -> None:
        self._tasks = tasks
        self._clock = clock

    def _by_transition(
        self,
        states: frozenset[TaskState],
        change: Callable[[TaskResult, float], TaskResult | None],
        apply: Callable[[str], Awaitable[bool]],
    ) -> Operation:
        """An operation whose single-task form applies the pure transition `change`."""

        async def would_change(result: TaskResult) -> bool:
            return change(result, self._clock.now()) is not None

        async def apply_one(task_id: str) -> tuple[bool, str]:
            return await apply(task_id), ""

        return Operation(states, would_change, apply_one)

    def cancel(self, kill_running: bool) -> Operation:
        """Cancels pending tasks, and with `kill_running` stops running ones."""

        async def apply(task_id: str) -> bool:
            return (await self._tasks.cancel(task_id, kill_running))[0]

        return self._by_transition(
            frozenset({TaskState.PENDING} | ({TaskState.RUNNING} if kill_running else set())),
            lambda r, now: transitions.cancel(r, now=now, kill_running=kill_running),
            apply,
        )

    def pause(self) -> Operation:
        """Pauses active tasks not paused yet."""
        return self._by_transition(
            ACTIVE,
            lambda r, now: transitions.pause(r, now=now),
            lambda task_id: _changed(self._tasks.pause(task_id)),
        )

    def resume(self) -> Operation:
        """Resumes paused tasks."""
        return self._by_transition(
            ACTIVE,
            lambda r, now: transitions.resume(r, now=now),
            lambda task_id: _changed(self._tasks.resume(task_id)),
        )

    def restart(self) -> Operation:
        """Restarts running tasks."""
        return self._by_transition(
            frozenset({TaskState.RUNNING}),
            lambda r, now: transitions.restart(r, now=now),
            lambda task_id: _changed(self._tasks.restart(task_id)),
        )

    def reprioritize(self, priority: int) -> Operation:
        """Gives pending tasks a new priority."""
        if not 0 <= priority <= 255:
            raise InvalidRequest(f"priority must be in 0..255, not {priority}")
        return self._by_transition(
            frozenset({TaskState.PENDING}),
            lambda r, now: transitions.reprioritize(r, now=now, priority=priority),
            lambda task_id: _changed(self._tasks.reprioritize(task_id, priority)),
        )

    def retry(self, authenticated_as: str = "") -> Operation:
        """Reruns finished tasks that did not succeed and were not rerun yet, on behalf
        of `authenticated_as`."""

        async def would_change(result: TaskResult) -> bool:
            if result.state is TaskState.COMPLETED and not result.failure:
                return False
            query = TaskQuery(tags=[f"{RETRY_TAG}:{result.task_id}"], limit=1)
            return not (await self._tasks.list_tasks(query)).items

        async def apply(task_id: str) -> tuple[bool, str]:
            request, _ = await self._tasks.retry(task_id, authenticated_as=authenticated_as)
            return True, request.task_id

        return Operation(FINAL, would_change, apply)

    async def run(
        self, op: Operation, tags: list[str], *, dry_run: bool, limit: int, admit: Admit
    ) -> BatchOutcome:
        """Applies `op` to the tasks with every tag in `tags`, at most `limit` of them.

        With `dry_run`, returns what it would change and changes nothing.
        Raises InvalidRequest for a bad selector, and what `admit` raises
        (before anything changes) for a task the caller may not change.
        """
        if not tags:
            raise InvalidRequest("tags: a batch operation needs at least one tag")
        for tag in tags:
            if ":" not in tag:
                raise InvalidRequest(f"tags: {tag!r} is not of the form key:value")
        if not 1 <= limit <= MAX_BATCH:
            raise InvalidRequest(f"limit must be in 1..{MAX_BATCH}")
        chosen = await self._select(op, tags, limit)
        for task in chosen:
            await admit(task.task_id)
        if dry_run:
            return BatchOutcome([t.task_id for t in chosen], [])
        changed: list[str] = []
        created: list[str] = []
        for task in chosen:
            try:
                did, new_id = await op.apply(task.task_id)
            except (Conflict, TaskNotFound):
                # Changed or gone since it was selected: nothing to do any more.
                continue
            if did:
                changed.append(task.task_id)
                if new_id:
                    created.append(new_id)
        return BatchOutcome(changed, created)

    async def _select(self, op: Operation, tags: list[str], limit: int) -> list[TaskResult]:
        """The first `limit` tasks, newest first, that `op` would change."""
        query = TaskQuery(states=op.states, tags=tags, limit=MAX_PAGE)
        chosen: list[TaskResult] = []
        scanned = 0
        while len(chosen) < limit and scanned < MAX_SELECTION:
            page = await self._tasks.list_tasks(query)
            scanned += len(page.items)
            for task in page.items:
                if len(chosen) < limit and await op.would_change(task):
                    chosen.append(task)
            if not page.cursor:
                break
            query = dataclasses.replace(query, cursor=page.cursor)
        return chosen


async def _changed(call: Awaitable[tuple[TaskResult, bool]]) -> bool:
    """Whether a single-task operation of TaskService changed its task."""
    return (await call)[1]
