"""The census behind /metrics (server/scheduler/census.py), on a real SQLite store and config."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.clock import FakeClock
from server.config.live import LiveConfig
from server.model import Bot, Queue, TaskState
from server.scheduler import census as census_module
from server.scheduler.census import BOT_STATES, CensusService
from server.store.sqlite import SqliteStore
from tests.store.records import add_task


@dataclasses.dataclass
class Fleet:
    """The store and clock a test fills, and the census over them."""

    store: SqliteStore
    clock: FakeClock
    census: CensusService

    async def bot(self, bot_id: str, pools: list[str], age: float = 0.0, **fields: Any) -> None:
        """Stores a bot in `pools`, last seen `age` seconds ago."""
        dims = {"id": [bot_id], "pool": pools} if pools else {"id": [bot_id]}
        await self.store.put_bot(
            Bot(bot_id=bot_id, dimensions=dims, last_seen_ts=self.clock.now() - age, **fields)
        )


@pytest.fixture
async def fleet(
    tmp_path: pathlib.Path, config_dir: pathlib.Path, clock: FakeClock
) -> AsyncIterator[Fleet]:
    """An empty store, the quickstart config (pool `default`, bot death timeout 600 s)."""
    store = await SqliteStore.open(tmp_path / "drover.sqlite3", clock=clock)
    census = CensusService(store, LiveConfig(config_dir, clock=clock), clock)
    yield Fleet(store, clock, census)
    await store.close()


async def test_bots_are_counted_per_pool_and_state(fleet: Fleet) -> None:
    """Each bot counts once per pool it is in, in the first state that applies: dead,
    quarantined, maintenance, busy, idle."""
    await fleet.bot("idle", ["default"])
    await fleet.bot("busy", ["default", "gpu"], task_id="1" * 16)
    await fleet.bot("dead", ["default"], age=601, task_id="2" * 16)
    await fleet.bot("quarantined", ["gpu"], quarantined="disk full", admin_maintenance="move")
    await fleet.bot("maintenance", ["gpu"], maintenance="reimage")
    await fleet.bot("poolless", [])
    bots = (await fleet.census.take()).bots
    assert {key: n for key, n in bots.items() if n} == {
        ("default", "idle"): 1,
        ("default", "busy"): 1,
        ("default", "dead"): 1,
        ("gpu", "busy"): 1,
        ("gpu", "quarantined"): 1,
        ("gpu", "maintenance"): 1,
        ("", "idle"): 1,
    }
    assert {state for pool, state in bots if pool == "gpu"} == set(BOT_STATES)


async def test_tasks_are_counted_by_their_queue_pool(fleet: Fleet) -> None:
    """Queued tasks count as the queue's count does (not paused, not expired); running ones
    count in the pool of their queue (or of their request when the queue is unknown)."""
    now = fleet.clock.now()
    await fleet.store.ensure_queue(Queue("qd", [("pool", "default")], now))
    await fleet.store.ensure_queue(Queue("qg", [("pool", "gpu")], now))
    await add_task(fleet.store, 1, queue_key="qd", expiration_ts=now + 60)
    await add_task(fleet.store, 2, queue_key="qd", expiration_ts=now - 1)
    await add_task(fleet.store, 3, queue_key="qd", paused=True)
    await add_task(fleet.store, 4, queue_key="qg", state=TaskState.RUNNING, bot_id="b")
    await add_task(fleet.store, 5, queue_key="qg", state=TaskState.COMPLETED, completed_ts=now)
    # Its request asks for pool `default` (tests/store/records.py).
    await add_task(fleet.store, 6, queue_key="unknown", state=TaskState.RUNNING, bot_id="c")
    census = await fleet.census.take()
    assert census.queued == {"default": 1, "gpu": 0}
    assert census.running == {"default": 1, "gpu": 1}


async def test_a_census_lets_the_loop_run_between_pages(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting a fleet of several pages yields to other coroutines after each page, so a
    big fleet's census does not hold up polls; every bot is still counted once."""
    monkeypatch.setattr(census_module, "PAGE", 2)
    for n in range(7):
        await fleet.bot(f"bot{n}", ["default"])
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = turns
    bots = (await fleet.census.take()).bots
    ticker.cancel()
    assert bots["default", "idle"] == 7
    assert turns - started >= 3, "the loop ran between the census's 4 pages of bots"
