"""The task service: create tasks, read them, read their output, cancel them.

Every change of a stored task goes through server/scheduler/mutation.py, a
read / pure transition / compare-and-set loop, so concurrent writers
(handlers, the background loop, other server processes) never lose each
other's changes. Parents and children are server/scheduler/children.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from server import ids
from server.auth import service_accounts
from server.clock import Clock
from server.config.model import ConfigSource
from server.errors import Conflict, InvalidRequest, TaskNotFound
from server.model import (
    Bot,
    BotQuery,
    DimensionPairs,
    Page,
    TaskQuery,
    TaskReport,
    TaskRequest,
    TaskResult,
    TaskState,
    evolve,
)
from server.scheduler import children, dedup, reports, requests, transitions
from server.scheduler.children import PARENT_TAG
from server.scheduler.mutation import mutate
from server.scheduler.queues import QueueIndex
from server.scheduler.waiters import Arrivals, Dispatched, NullNotifier, PollWaiters, Waiter
from server.store.base import Store

# New IDs tried when one is taken: 16 random bits per millisecond make a
# collision rare, and several in a row a sign of something else.
MAX_ID_ATTEMPTS = 5
# The tag the server adds to a rerun, naming its source.
RETRY_TAG = "retry_of"
# Page sizes, and how many tasks one count, summary or batch covers at most.
MAX_PAGE = 1000
MAX_SELECTION = 100_000
# A follower of a task's output re-reads it at least this often.
FOLLOW_RECHECK_SECS = 1.0
# A single stdout read returns at most this much.
MAX_STDOUT_READ = 16 * 1024 * 1024


class TaskService:
    """Creates, reads and cancels tasks."""

    def __init__(
        self,
        store: Store,
        config: ConfigSource,
        clock: Clock,
        queues: QueueIndex,
        notifier: Arrivals | None = None,
        output_waiters: PollWaiters | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._queues = queues
        self._notifier = notifier or NullNotifier()
        # Followers of task output wait here, keyed by task ID; runs notify them.
        self._output_waiters = output_waiters or PollWaiters()

    async def create(
        self, draft: TaskRequest, *, retry_of: str = ""
    ) -> tuple[TaskRequest, TaskResult]:
        """Validates and stores a new task, queued on the first slice that can run.

        A slice can run when it has `wait_for_capacity` or a live bot matches
        it; with none, the task is NO_RESOURCE at once. A repeated
        `request_uuid` returns the task created the first time. A child marks
        its parent first, and is cancelled at once if the parent ended while
        it was being stored (server/scheduler/children.py). A task that a
        held poll can take is stored reserved for that poll's bot and handed
        to it (server/scheduler/waiters.py): the result returned is running.
        """
        now = self._clock.now()
        request = requests.validate(evolve(draft, created_ts=now))
        service_accounts.check_allowed(
            self._config.current,
            request.service_account,
            [s.properties.pool for s in request.slices],
        )
        # Tags the server adds, so tasks can be selected by pool and parent.
        tags = [*request.tags, f"pool:{request.slices[0].properties.pool}"]
        parent_id = _summary_id(request.parent_task_id) if request.parent_task_id else ""
        if parent_id:
            await children.adopt(self._store, parent_id)
            tags.append(children.parent_tag(parent_id))
        request = evolve(request, task_id=ids.new_task_id(now), tags=sorted(set(tags)))
        result = TaskResult(
            task_id=request.task_id,
            state=TaskState.PENDING,
            created_ts=now,
            modified_ts=now,
            priority=request.priority,
            name=request.name,
            user=request.user,
            tags=request.tags,
            retry_of=retry_of,
            parent_check_ts=now + children.PARENT_CHECK_SECS if parent_id else None,
        )
        window = self._config.current.settings.reusable_task_age_secs
        reuse = await dedup.find_dedup(self._store, request, now, window)
        waiting = None if reuse else await self.wait_on_runnable_slice(request, result, 0, now)
        if reuse is not None:
            result = dedup.deduped_result(result, reuse[1], now, reuse[0])
        elif waiting is None:
            result = dataclasses.replace(
                result, state=TaskState.NO_RESOURCE, completed_ts=now, abandoned_ts=now
            )
        else:
            result = waiting
        # A held poll that can take the task has it handed over as it is stored.
        held = self._notifier.held_poll(result.queue_key) if result.is_dispatchable else None
        handed: Dispatched | None = None
        try:
            request, stored, created, handed = await self._store_new(request, result, now, held)
        finally:
            if held is not None:
                held.deliver(handed)  # None releases the poll: it claims, then holds again
        if not created:
            existing = await self._store.get_request(stored.task_id)
            assert existing is not None, "a stored result always has its request"
            return existing, stored
        if parent_id:
            stored = await children.confirm_parent(self._store, stored, parent_id, now)
        if stored.is_dispatchable:
            self._notifier.notify(stored.queue_key)
        if held is not None or stored.is_dispatchable:
            # The poll handed the task, or just woken to claim it, answers its
            # bot before this call's own answer is built: submit-to-start is the figure.
            await asyncio.sleep(0)
        return request, stored

    async def _store_new(
        self, request: TaskRequest, result: TaskResult, now: float, held: Waiter | None
    ) -> tuple[TaskRequest, TaskResult, bool, Dispatched | None]:
        """Stores a new task, under a fresh ID while its random bits collide (PROTOCOL.md 4.2).

        Returns (request as stored, result, created) as Store.create_task
        does, and the dispatch of the task when it was handed to `held`.
        """
        for _ in range(MAX_ID_ATTEMPTS):
            handed = None
            if held is not None and held.offer is not None:
                handed = held.offer(result, request, now)
            first, dispatch = handed or (result, None)
            try:
                stored, created = await self._store.create_task(request, first, dispatch)
            except Conflict:
                task_id = ids.new_task_id(now)
                request = dataclasses.replace(request, task_id=task_id)
                result = dataclasses.replace(result, task_id=task_id)
                continue
            return request, stored, created, handed if created else None
        raise Conflict("no free task ID was found, try again")

    async def wait_on_runnable_slice(
        self, request: TaskRequest, result: TaskResult, start: int, now: float
    ) -> TaskResult | None:
        """`result` waiting on the first slice from `start` on that can run, or None if none can.

        The one rule for the slice a pending task waits on, at creation
        (start 0) and when its slice expires (the next one on): its queue
        is registered before the task may enter it (PROTOCOL.md 4.4, 4.7).
        """
        index = await self.first_runnable_slice(request, start, now)
        if index is None:
            return None
        dims = request.slices[index].properties.dimensions
        key = await self._queues.register(dims, now)
        return transitions.next_slice(result, request, now=now, index=index, queue_key=key)

    async def first_runnable_slice(
        self, request: TaskRequest, start: int, now: float
    ) -> int | None:
        """The first slice from `start` on that has not expired and can run now."""
        for index in range(start, len(request.slices)):
            if request.slice_expiration_ts(index) <= now:
                continue
            task_slice = request.slices[index]
            if task_slice.wait_for_capacity or await self.has_capacity(
                task_slice.properties.dimensions, now
            ):
                return index
        return None

    async def has_capacity(self, dimensions: DimensionPairs, now: float) -> bool:
        """True when a bot seen within the bot death timeout matches `dimensions`."""
        timeout = self._config.current.settings.bot_death_timeout_secs
        query = BotQuery(dimensions=dimensions, is_dead=False, dead_before=now - timeout, limit=1)
        return bool((await self._store.list_bots(query)).items)

    async def terminate_bot(self, bot: Bot) -> str:
        """Queues a termination task pinned to `bot`; returns its ID.

        Like Swarming, termination is a task: it waits for the bot to finish
        what it runs, and the bot acknowledges it like a task it completed.
        """
        request, _ = await self.create(requests.termination(bot))
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
        source = result
        if result.deduped_from:
            # A deduplicated task never ran: its output is its source's.
            source = await self.get_result(result.deduped_from)
        if source.try_number == 0:
            return b"", result, 0
        size = await self._store.output_size(source.run_id)
        if offset >= size:
            return b"", result, size
        want = min(length or MAX_STDOUT_READ, MAX_STDOUT_READ, size - offset)
        data = await self._store.read_output(source.run_id, offset, want)
        return data, result, size

    async def follow_output(
        self, task_id: str, offset: int = 0
    ) -> AsyncIterator[tuple[bytes, TaskResult, int]]:
        """Yields (new output, result, size) as the task's output grows, until it ends.

        Woken by the task's updates in this process, and re-checks the Store
        every FOLLOW_RECHECK_SECS for updates that reached another process.
        The first item comes at once (with what output there is, maybe none)
        and the last carries the task's final result.
        """
        first = True
        while True:
            data, result, size = await self.read_output(task_id, offset)
            if data or first:
                first = False
                offset += len(data)
                yield data, result, size
                if not data and not result.state.is_active:
                    return
                continue
            if not result.state.is_active:
                yield b"", result, size
                return
            with self._output_waiters.waiting([result.task_id]) as waiter:
                await waiter.wait(FOLLOW_RECHECK_SECS)

    async def cancel(self, task_id: str, kill_running: bool) -> tuple[bool, bool]:
        """Cancels a pending task, or asks a running one to stop if `kill_running`.

        Cancelling a task cancels its children (and theirs), running or not.
        Returns (whether anything changed, whether the task was running).
        """
        now = self._clock.now()
        result, changed = await children.cancel(
            self._store, _summary_id(task_id), now, kill_running=kill_running
        )
        return changed, result.state is TaskState.RUNNING

    async def list_tasks(self, query: TaskQuery) -> Page[TaskResult]:
        """Lists tasks newest first."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be in 1..{MAX_PAGE}")
        return await self._store.list_tasks(query)

    async def count(self, query: TaskQuery, cap: int | None = None) -> dict[TaskState, int]:
        """How many tasks `query` matches per state, each up to `cap` (Store.count_tasks)."""
        return await self._store.count_tasks(query, cap)

    async def any_failed(self, query: TaskQuery) -> bool:
        """Whether a COMPLETED task `query` matches failed."""
        return await self._store.any_failed(query)

    async def select(self, query: TaskQuery, limit: int = MAX_SELECTION) -> list[TaskResult]:
        """Every task `query` matches, newest first, at most `limit` of them."""
        found: list[TaskResult] = []
        query = dataclasses.replace(query, limit=min(limit, MAX_PAGE), cursor="")
        while len(found) < limit:
            page = await self._store.list_tasks(query)
            found.extend(page.items)
            if not page.cursor:
                break
            query = dataclasses.replace(query, cursor=page.cursor)
        return found[:limit]

    async def report(self, task_id: str, report: TaskReport) -> tuple[TaskResult, TaskReport]:
        """Validates and appends structured results to a task; returns all of them."""
        result = await self.get_result(task_id)
        if report:
            await self._store.add_report(result.task_id, reports.validate(report))
        return result, await self._store.get_report(result.task_id)

    async def get_report(self, task_id: str) -> tuple[TaskResult, TaskReport]:
        """The task and its structured results."""
        result = await self.get_result(task_id)
        return result, await self._store.get_report(result.task_id)

    async def pause(self, task_id: str) -> tuple[TaskResult, bool]:
        """Pauses a task: pending, it is not handed out; running, our bot stops it."""
        now = self._clock.now()
        return await mutate(
            self._store, _summary_id(task_id), lambda r: transitions.pause(r, now=now)
        )

    async def resume(self, task_id: str) -> tuple[TaskResult, bool]:
        """Resumes a paused task."""
        now = self._clock.now()
        result, changed = await mutate(
            self._store, _summary_id(task_id), lambda r: transitions.resume(r, now=now)
        )
        if changed and result.is_dispatchable:
            self._notifier.notify(result.queue_key)
        return result, changed

    async def restart(self, task_id: str) -> tuple[TaskResult, bool]:
        """Stops the current run and queues the task again as a new try."""
        now = self._clock.now()
        current = await self.get_result(task_id)
        if not current.state.is_active:
            raise Conflict(f"task {current.task_id} has ended; :retry makes a new task from it")
        if transitions.is_out_of_tries(current):
            raise Conflict(
                f"task {current.task_id} runs its last try ({current.try_number}); "
                ":retry makes a new task from it once it ends"
            )
        result, changed = await mutate(
            self._store, current.task_id, lambda r: transitions.restart(r, now=now)
        )
        if changed and result.is_dispatchable:
            self._notifier.notify(result.queue_key)
        return result, changed

    async def reprioritize(self, task_id: str, priority: int) -> tuple[TaskResult, bool]:
        """Changes a pending task's priority."""
        if not 0 <= priority <= 255:
            raise InvalidRequest(f"priority must be in 0..255, not {priority}")
        current = await self.get_result(task_id)
        if current.state is not TaskState.PENDING:
            raise Conflict(f"task {current.task_id} is {current.state.name}, not PENDING")
        now = self._clock.now()
        return await mutate(
            self._store,
            current.task_id,
            lambda r: transitions.reprioritize(r, now=now, priority=priority),
        )

    async def retry(
        self, task_id: str, *, authenticated_as: str = ""
    ) -> tuple[TaskRequest, TaskResult]:
        """Creates a new task from a finished task's request ("rebuild").

        The rerun records who asked for it (`authenticated_as`), not who made the original.
        """
        old = await self.get_result(task_id)
        if old.state.is_active:
            raise Conflict(f"task {old.task_id} is {old.state.name}; only a finished task reruns")
        request = await self.get_request(old.task_id)
        # A rerun is nobody's child, and it names only its direct source.
        tags = [t for t in request.tags if not t.startswith((f"{RETRY_TAG}:", f"{PARENT_TAG}:"))]
        draft = dataclasses.replace(
            request,
            request_uuid="",
            parent_task_id="",
            tags=[*tags, f"{RETRY_TAG}:{old.task_id}"],
            authenticated_as=authenticated_as or request.authenticated_as,
        )
        return await self.create(draft, retry_of=old.task_id)


def _summary_id(task_id: str) -> str:
    """Accepts a summary or run ID and returns the summary ID."""
    if not ids.is_task_id(task_id):
        raise TaskNotFound(f"{task_id!r} is not a task ID")
    return ids.split_run_id(task_id)[0]
