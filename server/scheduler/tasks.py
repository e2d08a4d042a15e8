"""The task service: create tasks, read them, read their output, cancel them.

Every change of a stored task goes through `mutate`, a read / pure transition
/ compare-and-set loop, so concurrent writers (handlers, the background loop,
other server processes) never lose each other's changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from server import ids
from server.clock import Clock
from server.config.model import ConfigSnapshot
from server.errors import Conflict, TaskNotFound
from server.model import Bot, TaskProperties, TaskRequest, TaskResult, TaskSlice, TaskState
from server.scheduler import requests, transitions
from server.scheduler.queues import QueueIndex
from server.store.base import StaleWrite, Store

# How often a compare-and-set is retried under contention before giving up.
MAX_CAS_ATTEMPTS = 20
# A single stdout read returns at most this much.
MAX_STDOUT_READ = 16 * 1024 * 1024


class ConfigSource(Protocol):
    """Anything holding the current config snapshot (LiveConfig in production)."""

    @property
    def current(self) -> ConfigSnapshot: ...


class Notifier(Protocol):
    """Told when a queue gets work, so held polls can wake up."""

    def notify(self, queue_key: str) -> None: ...


class NullNotifier:
    """A notifier that tells no one."""

    def notify(self, queue_key: str) -> None:
        """Does nothing."""


async def mutate(
    store: Store, task_id: str, change: Callable[[TaskResult], TaskResult | None]
) -> tuple[TaskResult, bool]:
    """Applies `change` to a task's result with compare-and-set, retrying on conflicts.

    Returns (stored result, whether it changed). Raises TaskNotFound.
    """
    for _ in range(MAX_CAS_ATTEMPTS):
        current = await store.get_result(task_id)
        if current is None:
            raise TaskNotFound(task_id)
        new = change(current)
        if new is None:
            return current, False
        try:
            return await store.update_result(new), True
        except StaleWrite:
            continue
    raise Conflict(f"task {task_id} is changing too fast, try again")


class TaskService:
    """Creates, reads and cancels tasks."""

    def __init__(
        self,
        store: Store,
        config: ConfigSource,
        clock: Clock,
        queues: QueueIndex,
        notifier: Notifier | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._queues = queues
        self._notifier = notifier or NullNotifier()

    async def create(self, draft: TaskRequest) -> tuple[TaskRequest, TaskResult]:
        """Validates and stores a new task, queued on its first slice.

        A repeated `request_uuid` returns the task created the first time.
        """
        now = self._clock.now()
        request = requests.validate(dataclasses.replace(draft, created_ts=now))
        request = dataclasses.replace(request, task_id=ids.new_task_id(now))
        first = request.slices[0].properties
        key = await self._queues.register(first.dimensions, now)
        result = TaskResult(
            task_id=request.task_id,
            state=TaskState.PENDING,
            created_ts=now,
            modified_ts=now,
            priority=request.priority,
            name=request.name,
            user=request.user,
            tags=sorted(request.tags),
            queue_key=key,
            expiration_ts=request.slice_expiration_ts(0),
        )
        stored, created = await self._store.create_task(request, result)
        if not created:
            existing = await self._store.get_request(stored.task_id)
            assert existing is not None, "a stored result always has its request"
            return existing, stored
        self._notifier.notify(key)
        return request, stored

    async def terminate_bot(self, bot: Bot) -> str:
        """Queues a termination task pinned to `bot`; returns its ID.

        Like Swarming, termination is a task: it waits for the bot to finish
        what it runs, and the bot acknowledges it like a task it completed.
        """
        pool = (bot.dimensions.get("pool") or ["default"])[0]
        draft = TaskRequest(
            task_id="",
            created_ts=0.0,
            name=f"Terminate {bot.bot_id}",
            priority=0,
            slices=[
                TaskSlice(
                    properties=TaskProperties(
                        command=["terminate"],
                        dimensions=[("id", bot.bot_id), ("pool", pool)],
                    ),
                    expiration_secs=requests.MAX_EXPIRATION_SECS,
                )
            ],
            tags=[f"terminate:{bot.bot_id}"],
            bot_ping_tolerance_secs=requests.BOT_PING_TOLERANCE_RANGE[1],
            is_termination=True,
        )
        request, _ = await self.create(draft)
        return request.task_id

    async def get_result(self, task_id: str) -> TaskResult:
        """Returns a task's result. Raises TaskNotFound."""
        result = await self._store.get_result(_summary_id(task_id))
        if result is None:
            raise TaskNotFound(task_id)
        return result

    async def get_request(self, task_id: str) -> TaskRequest:
        """Returns a task's request. Raises TaskNotFound."""
        request = await self._store.get_request(_summary_id(task_id))
        if request is None:
            raise TaskNotFound(task_id)
        return request

    async def read_output(
        self, task_id: str, offset: int = 0, length: int = 0
    ) -> tuple[bytes, TaskResult, int]:
        """Returns (output bytes, result, total size) of the task's current run."""
        result = await self.get_result(task_id)
        if result.try_number == 0:
            return b"", result, 0
        size = await self._store.output_size(result.run_id)
        if offset >= size:
            return b"", result, size
        want = min(length or MAX_STDOUT_READ, MAX_STDOUT_READ, size - offset)
        data = await self._store.read_output(result.run_id, offset, want)
        return data, result, size

    async def cancel(self, task_id: str, kill_running: bool) -> tuple[bool, bool]:
        """Cancels a pending task, or asks a running one to stop if `kill_running`.

        Returns (whether anything changed, whether the task was running).
        """
        now = self._clock.now()
        result, changed = await mutate(
            self._store,
            _summary_id(task_id),
            lambda r: transitions.cancel(r, now=now, kill_running=kill_running),
        )
        return changed, result.state is TaskState.RUNNING


def _summary_id(task_id: str) -> str:
    """Accepts a summary or run ID and returns the summary ID."""
    if not ids.is_task_id(task_id):
        raise TaskNotFound(f"{task_id!r} is not a task ID")
    return ids.split_run_id(task_id)[0]
