"""Tasks and bots counted: the fleet at a glance (the web UI's overview), a selector's summary.

Task counts come from the store's indexes (Store.count_tasks), never from
decoded records. The overview's counts stop at a cap, and so do the bots'
(read page by page): past it a count says "at least", so an overview of a
deep history or a large fleet costs a bounded number of reads. A
selector's summary (the API's tasks:summary) is exact.
"""

from __future__ import annotations

import dataclasses

from server.model import BotQuery, TaskQuery, TaskState
from server.scheduler.fleet import MAX_PAGE as BOT_PAGE
from server.scheduler.fleet import FleetService
from server.scheduler.tasks import TaskService

# Tasks counted per state at most: a state with more shows "10000+".
TASK_CAP = 10_000
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


@dataclasses.dataclass(frozen=True)
class Selection:
    """The tasks a selector matches: how many in each state they are in, all done, all succeeded.

    `counts` holds only the states some task is in. An empty selection is
    done and succeeded, as `all()` of nothing is.
    """

    counts: dict[TaskState, int]
    all_done: bool
    all_succeeded: bool

    @property
    def total(self) -> int:
        """How many tasks the selector matches."""
        return sum(self.counts.values())


class SummaryService:
    """Counts tasks and bots by state."""

    def __init__(self, tasks: TaskService, fleet: FleetService) -> None:
        self._tasks = tasks
        self._fleet = fleet

    async def task_states(self, cap: int = TASK_CAP) -> Counts:
        """Tasks per state name, every state listed, each counted up to `cap`."""
        found = await self._tasks.count(TaskQuery(), cap + 1)
        counts = {state.name: min(found[state], cap) for state in TaskState}
        capped = {state.name for state in TaskState if found[state] > cap}
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


async def summarize(tasks: TaskService, query: TaskQuery) -> Selection:
    """The selector's exact counts; whether any failed is asked only when all COMPLETED."""
    counts = {state: n for state, n in (await tasks.count(query)).items() if n}
    all_completed = set(counts) <= {TaskState.COMPLETED}
    return Selection(
        counts=counts,
        all_done=not any(state.is_active for state in counts),
        all_succeeded=all_completed and not (counts and await tasks.any_failed(query)),
    )
