"""The background loop: expiry and slice fallback, released reservations, bot death,
and the children of ended tasks.

Safe with several server processes running it at once: every change is a
compare-and-set on the task's result, planned from the record it replaces,
so two sweepers acting on the same task cannot both win, and the loser
re-reads and finds nothing left to do (tests/scheduler/test_sweeper_concurrency.py).
Stopping the children of an ended task is idempotent the same way
(server/scheduler/children.py); a task whose children a dead server did not
stop stays due until a sweep has stopped them.
"""

from __future__ import annotations

import asyncio
import logging

from server.clock import Clock
from server.model import TaskRequest, TaskResult, TaskState
from server.scheduler import children, transitions
from server.scheduler.mutation import mutate_with
from server.scheduler.tasks import TaskService
from server.scheduler.waiters import Notifier
from server.store.base import Store

log = logging.getLogger("drover.sweeper")

# Tasks handled per pass; the loop runs again at once while a pass is full.
BATCH = 500


class Sweeper:
    """Moves tasks whose deadline passed to their next state."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        tasks: TaskService,
        notifier: Notifier,
    ) -> None:
        self._store = store
        self._clock = clock
        self._tasks = tasks
        self._notifier = notifier

    async def run_once(self) -> int:
        """Handles every task due now; returns how many changed.

        Each due task takes one compare-and-set to the state it must be in
        now, however many of its deadlines passed (a reservation released
        past its expiration ends EXPIRED at once). A full batch is followed
        by another, unless it changed nothing (another sweeper got there
        first, or what is left cannot change), so a pass always ends.
        """
        changed = 0
        while True:
            now = self._clock.now()
            due = await self._store.list_due(now, BATCH)
            moved = 0
            for result in due:
                moved += await self._sweep(result.task_id, now)
            changed += moved
            if len(due) < BATCH or not moved:
                return changed

    async def run(self, interval: float) -> None:
        """Sweeps every `interval` seconds until cancelled."""
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("sweep failed; trying again in %.1f s", interval)
            await asyncio.sleep(interval)

    async def _sweep(self, task_id: str, now: float) -> int:
        request = await self._store.get_request(task_id)
        if request is None:
            return 0

        async def plan(current: TaskResult) -> TaskResult | None:
            return await self._due_change(current, request, now)

        result, changed = await mutate_with(self._store, task_id, plan)
        if changed:
            log.info("task %s is now %s (try %d)", task_id, result.state.name, result.try_number)
            if result.is_dispatchable:
                self._notifier.notify(result.queue_key)
        # Its end, now or earlier (by a server that died before this step), stops its children.
        stopped = await children.stop_children(self._store, result, now)
        return int(changed or stopped)

    async def _due_change(
        self, current: TaskResult, request: TaskRequest, now: float
    ) -> TaskResult | None:
        """The state a task whose deadlines passed must be in at `now`; None if none passed.

        A running task's deadline releases its reservation or ends its run
        (maybe queueing it again); a pending task past its slice's
        expiration, maybe just released, moves on to the first later slice
        that can run, else it is EXPIRED (PROTOCOL.md 4.7).
        """
        result = passed_deadline(current, request, now=now) or current
        if result.state is TaskState.PENDING and result.expiration_ts <= now:
            start = result.current_slice + 1
            fallback = await self._tasks.wait_on_runnable_slice(request, result, start, now)
            result = fallback or transitions.expire(result, now=now)
        if result.parent_check_ts is not None and result.parent_check_ts <= now:
            result = await children.parent_checked(self._store, result, request, now)
        return None if result is current else result


def passed_deadline(result: TaskResult, request: TaskRequest, *, now: float) -> TaskResult | None:
    """What a running task's passed deadline makes of it; None when none passed.

    An unconfirmed reservation is released; a run without updates for its
    bot_ping_tolerance_secs dies, and is maybe queued again as a new try.
    """
    if result.state is not TaskState.RUNNING:
        return None
    if result.reserved_until is not None and result.reserved_until <= now:
        return transitions.release(result, now=now)
    if result.dead_after_ts is not None and result.dead_after_ts <= now:
        return transitions.bot_died(result, request, now=now)
    return None
