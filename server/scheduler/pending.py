"""Why a task is pending (`GET /api/v1/tasks/{id}/pending`, DESIGN.md 4.2).

For each slice of a task: how many bots match it, by state (idle, busy,
quarantined, dead); which requested dimension no live bot has, which is
usually the answer; and, for the slice the task waits on, how many tasks are
ahead of it in its queue. A read-only diagnostic: it reads bots and the
queue from the Store and changes nothing. The client API converts a report
into `PendingSliceInfo` (protos/api/tasks.proto).
"""

from __future__ import annotations

import dataclasses

from server import ids
from server.clock import Clock
from server.errors import TaskNotFound
from server.model import Bot, BotQuery, DimensionPairs, TaskRequest, TaskResult
from server.scheduler.tasks import ConfigSource
from server.store.base import Store

# Bots read per Store call while counting a slice's matching bots.
BOT_PAGE = 1000


@dataclasses.dataclass(frozen=True)
class SliceReport:
    """What stands between one slice of a task and a bot.

    The bot counts split the bots that match the slice's dimensions into
    four disjoint states, judged in this order: dead (unseen for the bot
    death timeout), quarantined (by itself or an admin, or in maintenance:
    either way it takes no task), busy (running a task), idle.
    """

    index: int
    # The slice the task is on: the one it waits on, runs or ended on.
    current: bool
    dimensions: DimensionPairs
    idle_bots: int
    busy_bots: int
    quarantined_bots: int
    dead_bots: int
    # Requested "key:value" pairs (OR values as "key:a|b") that no live bot has.
    unmatched_dimensions: list[str]
    # Tasks ahead in the queue: the current slice of a pending task only, else 0.
    queue_position: int
    expiration_ts: float


class PendingService:
    """Explains why tasks are pending."""

    def __init__(self, store: Store, config: ConfigSource, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    async def explain(self, task_id: str) -> tuple[TaskResult, list[SliceReport]]:
        """Returns the task's result and a report per slice, in slice order.

        Accepts a summary or run ID. A task that is not pending still gets
        its slices reported, all with queue_position 0. Raises TaskNotFound.
        """
        summary_id = _summary_id(task_id)
        result = await self._store.get_result(summary_id)
        request = await self._store.get_request(summary_id)
        if result is None or request is None:
            raise TaskNotFound(task_id)
        dead_before = self._clock.now() - self._config.current.settings.bot_death_timeout_secs
        position = await self._store.queue_position(result)
        reports = []
        for index in range(len(request.slices)):
            current = index == result.current_slice
            reports.append(
                await self._report(request, index, current, position if current else 0, dead_before)
            )
        return result, reports

    async def _report(
        self, request: TaskRequest, index: int, current: bool, position: int, dead_before: float
    ) -> SliceReport:
        dimensions = request.slices[index].properties.dimensions
        counts = {"idle": 0, "busy": 0, "quarantined": 0, "dead": 0}
        for bot in await self._matching_bots(dimensions):
            counts[bot_state(bot, dead_before)] += 1
        return SliceReport(
            index=index,
            current=current,
            dimensions=list(dimensions),
            idle_bots=counts["idle"],
            busy_bots=counts["busy"],
            quarantined_bots=counts["quarantined"],
            dead_bots=counts["dead"],
            unmatched_dimensions=await self._unmatched(dimensions, dead_before),
            queue_position=position,
            expiration_ts=request.slice_expiration_ts(index),
        )

    async def _matching_bots(self, dimensions: DimensionPairs) -> list[Bot]:
        """Every bot, dead or alive, whose dimensions match the slice's."""
        bots: list[Bot] = []
        query = BotQuery(dimensions=dimensions, limit=BOT_PAGE)
        while True:
            page = await self._store.list_bots(query)
            bots.extend(page.items)
            if not page.cursor:
                return bots
            query = dataclasses.replace(query, cursor=page.cursor)

    async def _unmatched(self, dimensions: DimensionPairs, dead_before: float) -> list[str]:
        """The requested pairs that no live bot has, each looked up on its own."""
        unmatched = []
        for key, value in dimensions:
            query = BotQuery(
                dimensions=[(key, value)], is_dead=False, dead_before=dead_before, limit=1
            )
            if not (await self._store.list_bots(query)).items:
                unmatched.append(f"{key}:{value}")
        return unmatched


def bot_state(bot: Bot, dead_before: float) -> str:
    """Classifies a bot as "dead", "quarantined", "busy" or "idle" (SliceReport's order)."""
    if bot.last_seen_ts < dead_before:
        return "dead"
    if bot.quarantined or bot.admin_quarantine or bot.maintenance or bot.admin_maintenance:
        return "quarantined"
    if bot.task_id:
        return "busy"
    return "idle"


def _summary_id(task_id: str) -> str:
    """Accepts a summary or run ID and returns the summary ID."""
    if not ids.is_task_id(task_id):
        raise TaskNotFound(f"{task_id!r} is not a task ID")
    return ids.split_run_id(task_id)[0]
