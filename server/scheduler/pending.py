"""Why a task is pending (`GET /api/v1/tasks/{id}/pending`, DESIGN.md 4.2).

For each slice of a task: how many bots match it, by state (idle, busy,
quarantined, dead); which requested dimension no live bot has, which is
usually the answer; and, for the slice the task waits on, how many tasks are
ahead of it in its queue. A read-only diagnostic: it reads bots and the
queue from the Store and changes nothing. The client API converts a report
into `PendingSliceInfo` (protos/api/tasks.proto).

The same questions asked of each queue (a requested dimension set) give the
web UI's queue view (`PendingService.queues`): how many tasks wait in it and
which bots could take them.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from server import ids
from server.clock import Clock
from server.config.model import ConfigSource
from server.errors import InvalidRequest, TaskNotFound
from server.model import Bot, BotQuery, DimensionPairs, Page, TaskRequest, TaskResult
from server.store.base import Store

# Bots read per Store call while counting a slice's matching bots.
BOT_PAGE = 1000
# Queues reported per page; each costs a listing of its matching bots.
MAX_QUEUE_PAGE = 200
# Matching bot IDs a queue report names (the counts cover them all).
MAX_LISTED_BOTS = 20


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


class BotCounts(Protocol):
    """The matching bots of a slice or a queue, by state, and what no live bot has."""

    @property
    def idle_bots(self) -> int: ...
    @property
    def busy_bots(self) -> int: ...
    @property
    def quarantined_bots(self) -> int: ...
    @property
    def dead_bots(self) -> int: ...
    @property
    def unmatched_dimensions(self) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class BotMatch:
    """The bots matching a dimension set, counted as in SliceReport."""

    idle_bots: int
    busy_bots: int
    quarantined_bots: int
    dead_bots: int
    unmatched_dimensions: list[str]
    # Up to MAX_LISTED_BOTS of them: idle first, then busy, quarantined, dead.
    bot_ids: list[str]


@dataclasses.dataclass(frozen=True)
class QueueReport:
    """One queue: its dimension set, the tasks waiting in it and the bots matching it."""

    key: str
    dimensions: DimensionPairs
    created_ts: float
    # Tasks a bot could be handed now (Store.count_queued): paused tasks are
    # out of the queue, and expired ones the sweeper has yet to end do not count.
    pending: int
    bots: BotMatch


def reason(counts: BotCounts) -> str:
    """Why work with these matching bots waits (or need not), in one sentence."""
    if counts.idle_bots:
        return f"{_are(counts.idle_bots)} idle: the next poll of one should take it"
    if counts.busy_bots:
        extra = f", {_are(counts.quarantined_bots)} quarantined" if counts.quarantined_bots else ""
        return f"every live bot that matches is busy: {_are(counts.busy_bots)} busy{extra}"
    if counts.quarantined_bots:
        return (
            "every live bot that matches is quarantined or in maintenance: "
            f"{_are(counts.quarantined_bots)} quarantined"
        )
    if counts.unmatched_dimensions:
        dead = f"; {_are(counts.dead_bots)} dead" if counts.dead_bots else ""
        return f"no live bot has {', '.join(counts.unmatched_dimensions)}{dead}"
    if counts.dead_bots:
        return f"only dead bots match: {_are(counts.dead_bots)} dead"
    return "no bot has all of these dimensions together"


def _are(n: int) -> str:
    """Counts matching bots with their verb: "1 matching bot is", "2 matching bots are"."""
    return f"{n} matching bot is" if n == 1 else f"{n} matching bots are"


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
        match = await self._match(dimensions, dead_before)
        return SliceReport(
            index=index,
            current=current,
            dimensions=list(dimensions),
            idle_bots=match.idle_bots,
            busy_bots=match.busy_bots,
            quarantined_bots=match.quarantined_bots,
            dead_bots=match.dead_bots,
            unmatched_dimensions=match.unmatched_dimensions,
            queue_position=position,
            expiration_ts=request.slice_expiration_ts(index),
        )

    async def queues(
        self, limit: int, cursor: str = "", *, include_empty: bool = False
    ) -> Page[QueueReport]:
        """Reports on the known queues, most pending tasks first (then oldest), paged.

        Each queue's pending count is one Store.count_queued; bots are looked up only
        for the queues of the page. Without `include_empty`, queues with no
        task waiting are left out. The cursor is an offset into that order,
        which moves as tasks come and go: a diagnostic view, not a ledger.
        Raises InvalidRequest for a bad limit or cursor.
        """
        if not 1 <= limit <= MAX_QUEUE_PAGE:
            raise InvalidRequest(f"limit must be in 1..{MAX_QUEUE_PAGE}")
        if cursor and not cursor.isdigit():
            raise InvalidRequest(f"cursor {cursor!r} is not a queue page cursor")
        start = int(cursor or 0)
        known = await self._store.list_queues()
        now = self._clock.now()
        depths = [(queue, await self._store.count_queued(queue.key, now)) for queue in known]
        depths = [(q, n) for q, n in depths if n or include_empty]
        depths.sort(key=lambda qn: (-qn[1], qn[0].created_ts, qn[0].key))
        dead_before = now - self._config.current.settings.bot_death_timeout_secs
        items = []
        for queue, depth in depths[start : start + limit]:
            match = await self._match(queue.dimensions, dead_before)
            items.append(
                QueueReport(queue.key, list(queue.dimensions), queue.created_ts, depth, match)
            )
        more = start + limit < len(depths)
        return Page(items, str(start + limit) if more else "")

    async def _match(self, dimensions: DimensionPairs, dead_before: float) -> BotMatch:
        """The bots matching `dimensions`, counted by state, and what no live bot has."""
        counts = {"idle": 0, "busy": 0, "quarantined": 0, "dead": 0}
        by_state: dict[str, list[str]] = {state: [] for state in counts}
        for bot in await self._matching_bots(dimensions):
            state = bot_state(bot, dead_before)
            counts[state] += 1
            by_state[state].append(bot.bot_id)
        listed = [bot_id for ids_of_state in by_state.values() for bot_id in ids_of_state]
        return BotMatch(
            idle_bots=counts["idle"],
            busy_bots=counts["busy"],
            quarantined_bots=counts["quarantined"],
            dead_bots=counts["dead"],
            unmatched_dimensions=await self._unmatched(dimensions, dead_before),
            bot_ids=listed[:MAX_LISTED_BOTS],
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
