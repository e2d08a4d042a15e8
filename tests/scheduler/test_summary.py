"""Tasks and bots counted by state (server/scheduler/summary.py), on a real SQLite store."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.clock import FakeClock
from server.config.live import LiveConfig
from server.model import Bot, TaskProperties, TaskRequest, TaskSlice
from server.scheduler.fleet import FleetService
from server.scheduler.queues import QueueIndex
from server.scheduler.summary import SummaryService
from server.scheduler.tasks import TaskService
from server.store.sqlite import SqliteStore


class Services:
    """The store and the services a summary reads through."""

    def __init__(self, store: SqliteStore, config: LiveConfig, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.tasks = TaskService(store, config, clock, QueueIndex(store))
        self.fleet = FleetService(store, config, clock)
        self.summary = SummaryService(self.tasks, self.fleet)

    async def bot(self, bot_id: str, age: float = 0.0, **fields: Any) -> Bot:
        """Stores a bot last seen `age` seconds ago."""
        bot = Bot(bot_id=bot_id, last_seen_ts=self.clock.now() - age, **fields)
        await self.store.put_bot(bot)
        return bot

    async def task(self) -> str:
        """Creates a pending task in pool default (waiting for capacity)."""
        properties = TaskProperties(command=["true"], dimensions=[("pool", "default")])
        draft = TaskRequest(
            task_id="",
            created_ts=0.0,
            name="t",
            priority=100,
            slices=[TaskSlice(properties, expiration_secs=300, wait_for_capacity=True)],
        )
        request, _ = await self.tasks.create(draft)
        self.clock.advance(0.01)
        return request.task_id


@pytest.fixture
async def services(
    tmp_path: pathlib.Path, config_dir: pathlib.Path, clock: FakeClock
) -> AsyncIterator[Services]:
    """The services over a store in tmp_path and the quickstart config (death after 600 s)."""
    store = await SqliteStore.open(tmp_path / "drover.sqlite3", clock=clock)
    yield Services(store, LiveConfig(config_dir, clock=clock), clock)
    await store.close()


async def test_tasks_are_counted_per_state_up_to_the_cap(services: Services) -> None:
    """Every state is listed; a state with more tasks than the cap says so."""
    ids = [await services.task() for _ in range(4)]
    await services.tasks.cancel(ids[0], kill_running=False)
    counts = await services.summary.task_states(cap=2)
    assert counts.counts["PENDING"] == 2
    assert counts.capped == frozenset({"PENDING"})
    assert counts.counts["CANCELED"] == 1
    assert counts.counts["COMPLETED"] == 0
    assert len(counts.counts) == 10
    exact = await services.summary.task_states()
    assert (exact.counts["PENDING"], exact.capped, exact.total) == (3, frozenset(), 4)


async def test_bots_are_counted_per_state_up_to_the_cap(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bots split into idle, busy, quarantined and dead across listing pages; past the cap
    every count is marked as a lower bound."""
    monkeypatch.setattr("server.scheduler.summary.BOT_PAGE", 2)
    await services.bot("a-idle")
    await services.bot("b-busy", task_id="1231")
    await services.bot("c-quarantined", admin_quarantine="flaky")
    await services.bot("d-maintenance", maintenance="upgrade")
    await services.bot("e-dead", age=601, task_id="4561")
    counts = await services.summary.bot_states()
    assert counts.counts == {"idle": 1, "busy": 1, "quarantined": 2, "dead": 1}
    assert counts.capped == frozenset()
    capped = await services.summary.bot_states(cap=3)
    assert capped.counts == {"idle": 1, "busy": 1, "quarantined": 1, "dead": 0}
    assert capped.capped == frozenset(capped.counts)


async def test_a_bots_state_follows_the_clock(services: Services) -> None:
    """FleetService.state names a bot dead once unseen for the bot death timeout."""
    bot = await services.bot("bot1", task_id="1231")
    assert services.fleet.state(bot) == "busy"
    services.clock.advance(601)
    assert services.fleet.state(bot) == "dead"
