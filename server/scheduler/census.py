"""The fleet counted per pool: queued and running tasks, bots by state (for /metrics).

One census reads every queue's count (Store.count_queued), every running
task and every bot, so its cost grows with the queues, the running tasks
and the fleet, and, through the queue counts, with the pending work (a
range count per queue in SQLite, one key per queued task in Datastore).
Nothing here caches: server/metrics.py takes a census at most once every
few seconds, whatever the scrape rate.

A pool is the value of a task's `pool` dimension (exactly one per slice,
server/scheduler/requests.py) and any of the values of a bot's: a bot in
two pools counts in both. Every pool of pools.cfg is reported, with zeros
when it has nothing, so a pool's series do not vanish while it is idle.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.clock import Clock
from server.config.model import ConfigSource
from server.model import Bot, BotQuery, DimensionPairs, Page, TaskQuery, TaskResult, TaskState
from server.scheduler.pending import bot_state
from server.store.base import Store

# Records read per Store call while counting. The SQLite store reads on the
# event loop's thread, and a census of 10,000 bots decodes them all (about
# 0.13 s): the census lets the loop run between pages, so no poll or API
# call waits behind more than one page (a few milliseconds).
PAGE = 250
# The states a bot is counted in, judged in this order (see `census_state`).
BOT_STATES = ("dead", "quarantined", "maintenance", "busy", "idle")

T = TypeVar("T")
Q = TypeVar("Q", TaskQuery, BotQuery)


@dataclasses.dataclass(frozen=True)
class Census:
    """How many of each kind, per pool."""

    # Tasks a bot could be handed now (Store.count_queued), per pool.
    queued: dict[str, int]
    # Tasks in state RUNNING (reserved ones included), per pool.
    running: dict[str, int]
    # Bots per (pool, state), every state of BOT_STATES listed for each pool.
    bots: dict[tuple[str, str], int]


def census_state(bot: Bot, dead_before: float) -> str:
    """One of BOT_STATES: as bot_state judges, with maintenance told apart from quarantine.

    A bot both quarantined and in maintenance counts as quarantined.
    """
    state = bot_state(bot, dead_before)
    if state == "quarantined" and not (bot.quarantined or bot.admin_quarantine):
        return "maintenance"
    return state


class CensusService:
    """Takes censuses of the tasks and bots in the Store."""

    def __init__(self, store: Store, config: ConfigSource, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    async def take(self) -> Census:
        """Counts the fleet now; each count is read page by page, never all at once."""
        now = self._clock.now()
        snapshot = self._config.current
        dead_before = now - snapshot.settings.bot_death_timeout_secs
        pools = {name for pool in snapshot.pools.pool for name in pool.name}
        queues = await self._store.list_queues()
        pool_of = {queue.key: _pool(queue.dimensions) for queue in queues}
        queued: collections.Counter[str] = collections.Counter()
        for queue in queues:
            queued[pool_of[queue.key]] += await self._store.count_queued(queue.key, now)
        running: collections.Counter[str] = collections.Counter()
        running_query = TaskQuery(states=frozenset([TaskState.RUNNING]), limit=PAGE)
        # At most one running task per bot: as many as the busy fleet.
        for result in await _every(self._store.list_tasks, running_query):
            running[pool_of.get(result.queue_key) or await self._pool_of_task(result)] += 1
        bots: collections.Counter[tuple[str, str]] = collections.Counter()
        for bot in await _every(self._store.list_bots, BotQuery(limit=PAGE)):
            state = census_state(bot, dead_before)
            for pool in bot.dimensions.get("pool") or [""]:
                bots[pool, state] += 1
        pools.update(set(queued) | set(running) | {pool for pool, _ in bots})
        return Census(
            queued={pool: queued[pool] for pool in sorted(pools)},
            running={pool: running[pool] for pool in sorted(pools)},
            bots={
                (pool, state): bots[pool, state] for pool in sorted(pools) for state in BOT_STATES
            },
        )

    async def _pool_of_task(self, result: TaskResult) -> str:
        """The pool of a task whose queue the census did not read (created meanwhile)."""
        request = await self._store.get_request(result.task_id)
        if request is None:
            return ""
        return request.slices[result.current_slice].properties.pool


async def _every(list_page: Callable[[Q], Awaitable[Page[T]]], query: Q) -> list[T]:
    """Every item of a listing, read page by page."""
    found: list[T] = []
    while True:
        page = await list_page(query)
        found.extend(page.items)
        if not page.cursor:
            return found
        query = dataclasses.replace(query, cursor=page.cursor)
        await asyncio.sleep(0)  # the loop's other work goes first (see PAGE)


def _pool(dimensions: DimensionPairs) -> str:
    return next((value for key, value in dimensions if key == "pool"), "")
