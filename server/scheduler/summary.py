"""The fleet at a glance: tasks per state and bots per state (the web UI's overview).

Counts are read through the task and fleet services, page by page, and
stop at a cap: past it a count says "at least", so an overview of a deep
history or a large fleet costs a bounded number of reads.
"""

from __future__ import annotations

import dataclasses

from server.model import BotQuery, TaskQuery, TaskState
from server.scheduler.fleet import MAX_PAGE as BOT_PAGE
from server.scheduler.fleet import FleetService
from server.scheduler.tasks import TaskService

# Tasks counted per state at most: a state with more shows "1000+".
TASK_CAP = 1000
# Bots counted at most; fleets beyond it show the counts of the first ones by ID.
BOT_CAP = 10_000
BOT_STATES = ("idle", "busy", "quarantined", "dead")


@dataclasses.dataclass(frozen=True)
class Counts:
    """How many of each kind; a kind in `capped` has at least that many."""

    counts: dict[str, int]
    capped: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        """The sum of the counts (a lower bound when any is capped)."""
        return sum(self.counts.values())


class SummaryService:
    """Counts tasks and bots by state."""

    def __init__(self, tasks: TaskService, fleet: FleetService) -> None:
        self._tasks = tasks
        self._fleet = fleet

    async def task_states(self, cap: int = TASK_CAP) -> Counts:
        """Tasks per state name, every state listed, each counted up to `cap`."""
        counts: dict[str, int] = {}
        capped = set()
        for state in TaskState:
            found = await self._tasks.select(TaskQuery(states=frozenset([state])), cap + 1)
            counts[state.name] = min(len(found), cap)
            if len(found) > cap:
                capped.add(state.name)
        return Counts(counts, frozenset(capped))

    async def bot_states(self, cap: int = BOT_CAP) -> Counts:
        """Bots per state (FleetService.state), over the first `cap` bots by ID."""
        counts = dict.fromkeys(BOT_STATES, 0)
        seen = 0
        query = BotQuery(limit=min(cap, BOT_PAGE))
        while seen < cap:
            page = await self._fleet.list_bots(query)
            for bot in page.items[: cap - seen]:
                counts[self._fleet.state(bot)] += 1
            seen += len(page.items)
            if not page.cursor:
                return Counts(counts)
            query = dataclasses.replace(query, cursor=page.cursor)
        return Counts(counts, frozenset(BOT_STATES))
