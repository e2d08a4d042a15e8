"""The background loop: expiry and slice fallback, released reservations, bot death.

Safe with several server processes running it at once: every change is a
compare-and-set on the task's result, so two sweepers acting on the same
task cannot both win, and the loser re-reads and finds nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging

from server.clock import Clock
from server.ids import MAX_TRIES
from server.model import TaskRequest, TaskResult, TaskState
from server.scheduler import transitions
from server.scheduler.queues import QueueIndex
from server.scheduler.tasks import Notifier, TaskService, mutate
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
        queues: QueueIndex,
        notifier: Notifier,
    ) -> None:
        self._store = store
        self._clock = clock
        self._tasks = tasks
        self._queues = queues
        self._notifier = notifier

    async def run_once(self) -> int:
        """Handles every task due now; returns how many changed."""
        changed = 0
        while True:
            now = self._clock.now()
            due = await self._store.list_due(now, BATCH)
            for result in due:
                changed += await self._sweep(result.task_id, now)
            if len(due) < BATCH:
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
        # The slice to fall back to if the current one expired: the first
        # later one that has not expired and can run (PROTOCOL.md 4.7).
        fallback: dict[int, str] = {}
        index = await self._tasks.first_runnable_slice(request, 0, now)
        if index is not None:
            dims = request.slices[index].properties.dimensions
            fallback[index] = await self._queues.register(dims, now)
        result, changed = await mutate(
            self._store, task_id, lambda r: _due_change(r, request, now, fallback)
        )
        if changed:
            log.info("task %s is now %s (try %d)", task_id, result.state.name, result.try_number)
            if result.is_dispatchable:
                self._notifier.notify(result.queue_key)
        return int(changed)


def allowed_retries(request: TaskRequest, result: TaskResult) -> int:
    """How many times a run lost with its bot is retried: the request's count,
    at least once for an idempotent slice (running it again is harmless)."""
    idempotent = request.slices[result.current_slice].properties.idempotent
    return min(max(request.max_retries, 1 if idempotent else 0), MAX_TRIES - 1)


def _due_change(
    r: TaskResult, request: TaskRequest, now: float, fallback: dict[int, str]
) -> TaskResult | None:
    """The change a passed deadline makes, or None if nothing is due any more."""
    if r.state is TaskState.PENDING and r.expiration_ts <= now:
        later = {i: k for i, k in fallback.items() if i > r.current_slice}
        if later:
            index, key = next(iter(later.items()))
            return transitions.next_slice(
                r,
                now=now,
                index=index,
                queue_key=key,
                expiration_ts=request.slice_expiration_ts(index),
            )
        return transitions.expire(r, now=now)
    if r.state is not TaskState.RUNNING:
        return None
    if r.reserved_until is not None and r.reserved_until <= now:
        return transitions.release(r, now=now)
    if r.dead_after_ts is not None and r.dead_after_ts <= now:
        requeue_until = now + request.slices[r.current_slice].expiration_secs
        retry = requeue_until if r.try_number <= allowed_retries(request, r) else None
        died = transitions.bot_died(r, now=now, retry_expiration_ts=retry)
        return transitions.settle_restart(died, now=now, expiration_ts=requeue_until)
    return None
