"""Why a task is pending (server/scheduler/pending.py), on a real SQLite store and config."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.clock import FakeClock
from server.config.live import LiveConfig
from server.errors import InvalidRequest, TaskNotFound
from server.model import Bot, TaskProperties, TaskRequest, TaskSlice
from server.scheduler import pending
from server.scheduler.pending import PendingService, SliceReport
from server.scheduler.queues import QueueIndex
from server.scheduler.tasks import TaskService
from server.store.sqlite import SqliteStore
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory

LINUX = [("os", "Linux"), ("pool", "default")]


@dataclasses.dataclass
class Services:
    """The pieces a test drives: the store, the task service, the service under test."""

    store: SqliteStore
    tasks: TaskService
    pending: PendingService
    clock: FakeClock

    async def bot(self, bot_id: str, age: float = 0.0, **fields: Any) -> None:
        """Stores a bot in pool `default` on Linux, last seen `age` seconds ago."""
        dims = {"id": [bot_id], "os": ["Linux"], "pool": ["default"]}
        fields.setdefault("dimensions", dims)
        await self.store.put_bot(Bot(bot_id=bot_id, last_seen_ts=self.clock.now() - age, **fields))

    async def task(self, *dims: list[tuple[str, str]], priority: int = 100) -> str:
        """Creates a task with one slice per dimension set (300 s each, waiting for capacity)."""
        slices = [
            TaskSlice(
                properties=TaskProperties(command=["true"], dimensions=d),
                expiration_secs=300,
                wait_for_capacity=True,
            )
            for d in dims
        ]
        draft = TaskRequest(task_id="", created_ts=0.0, name="t", priority=priority, slices=slices)
        request, _ = await self.tasks.create(draft)
        return request.task_id

    async def explain(self, task_id: str) -> list[SliceReport]:
        """The slice reports of a task."""
        _, reports = await self.pending.explain(task_id)
        return reports


@pytest.fixture
async def services(
    tmp_path: pathlib.Path, config_dir: pathlib.Path, clock: FakeClock
) -> AsyncIterator[Services]:
    """A store, the quickstart config (bot death timeout 600 s) and the services on them."""
    store = await SqliteStore.open(tmp_path / "drover.sqlite3", clock=clock)
    config = LiveConfig(config_dir, clock=clock)
    tasks = TaskService(store, config, clock, QueueIndex(store))
    yield Services(store, tasks, PendingService(store, config, clock), clock)
    await store.close()


def counts(report: pending.BotCounts) -> tuple[int, int, int, int]:
    """(idle, busy, quarantined, dead) of a slice report or a queue's bots."""
    return (report.idle_bots, report.busy_bots, report.quarantined_bots, report.dead_bots)


async def test_matching_bots_counted_by_state(services: Services) -> None:
    """Matching bots split into idle, busy, quarantined (any kind) and dead; others are left out."""
    await services.bot("idle")
    await services.bot("busy", task_id="1230")
    await services.bot("quarantined", quarantined="disk full")
    await services.bot("admin-quarantined", admin_quarantine="flaky")
    await services.bot("maintenance", maintenance="rebooting")
    await services.bot("admin-maintenance", admin_maintenance="upgrade")
    await services.bot("busy-quarantined", task_id="4560", quarantined="disk full")
    await services.bot("dead", age=601)
    await services.bot("dead-quarantined", age=601, quarantined="gone")
    await services.bot("just-alive", age=600)
    await services.bot("mac", dimensions={"os": ["Mac"], "pool": ["default"]})
    [report] = await services.explain(await services.task(LINUX))
    assert counts(report) == (2, 1, 5, 2)
    assert report.unmatched_dimensions == []


async def test_unmatched_dimensions_name_what_no_live_bot_has(services: Services) -> None:
    """Each requested pair no live bot has is listed, an OR value whole; dead bots do not count."""
    await services.bot("linux")
    gpu = {"gpu": ["nvidia"], "os": ["Linux"], "pool": ["default"]}
    await services.bot("dead-gpu", age=601, dimensions=gpu)
    mac = [("os", "Mac"), ("pool", "default")]
    task_id = await services.task([("gpu", "amd|nvidia"), *LINUX], mac)
    first, second = await services.explain(task_id)
    assert first.unmatched_dimensions == ["gpu:amd|nvidia"]
    assert counts(first) == (0, 0, 0, 1)
    assert second.unmatched_dimensions == ["os:Mac"]
    assert counts(second) == (0, 0, 0, 0)


async def test_queue_position_and_current_slice(services: Services) -> None:
    """The current slice shows the tasks ahead in its queue; other slices show 0."""
    await services.bot("idle")
    await services.task(LINUX, priority=10)
    await services.task(LINUX, priority=20)
    await services.task([("os", "Mac"), ("pool", "default")], priority=1)
    task_id = await services.task(LINUX, [("os", "Mac"), ("pool", "default")], priority=30)
    first, second = await services.explain(task_id)
    assert (first.index, first.current, first.queue_position) == (0, True, 2)
    assert (second.index, second.current, second.queue_position) == (1, False, 0)
    created = services.clock.now()
    assert (first.expiration_ts, second.expiration_ts) == (created + 300, created + 600)
    assert first.dimensions == LINUX


async def test_task_that_is_not_pending_still_reports(services: Services) -> None:
    """A cancelled task's slices are reported with their bots, at queue position 0."""
    await services.bot("idle")
    await services.task(LINUX, priority=1)
    task_id = await services.task(LINUX)
    assert (await services.explain(task_id))[0].queue_position == 1
    await services.tasks.cancel(task_id, kill_running=False)
    result, [report] = await services.pending.explain(task_id)
    assert result.state.name == "CANCELED"
    assert report.queue_position == 0
    assert report.current
    assert counts(report) == (1, 0, 0, 0)


async def test_unknown_task_and_run_ids(services: Services) -> None:
    """Unknown or malformed IDs raise TaskNotFound; a run ID explains its task."""
    await services.bot("idle")
    task_id = await services.task(LINUX)
    with pytest.raises(TaskNotFound):
        await services.pending.explain("1" * 15 + "0")
    with pytest.raises(TaskNotFound):
        await services.pending.explain("not-a-task")
    result, reports = await services.pending.explain(task_id[:-1] + "1")
    assert result.task_id == task_id
    assert len(reports) == 1


async def test_all_pages_of_bots_are_counted(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bots are counted across every page of the listing, not just the first."""
    monkeypatch.setattr(pending, "BOT_PAGE", 2)
    for n in range(5):
        await services.bot(f"bot{n}")
    [report] = await services.explain(await services.task(LINUX))
    assert counts(report) == (5, 0, 0, 0)


async def test_pending_report_over_http(make_server: ServerFactory, clock: FakeClock) -> None:
    """GET /api/v1/tasks/{id}/pending reports each slice: matching bots by state, what no
    live bot has, and the queue position of the slice the task waits on."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    assert (await bot.poll())["cmd"] == "sleep"
    body = task_body(wait=True)
    anywhere = body["task_slices"][0]
    mac = {**anywhere, "properties": {**anywhere["properties"]}}
    mac["properties"]["dimensions"] = [
        *anywhere["properties"]["dimensions"],
        {"key": "os", "value": "Mac"},
    ]
    body["task_slices"] = [mac, anywhere]
    for _ in range(2):
        assert (await client.post("/api/v1/tasks", json=body)).status == 200
        # Tasks of one millisecond order by their random ID bits: keep them apart.
        clock.advance(1)
    task_id = (await (await client.post("/api/v1/tasks", json=body)).json())["task_id"]
    resp = await client.get(f"/api/v1/tasks/{task_id}/pending")
    assert resp.status == 200
    report = await resp.json()
    assert (report["task_id"], report["state"]) == (task_id, "PENDING")
    first, second = report["slices"]
    assert first["current"] is True
    assert first["unmatched_dimensions"] == ["os:Mac"]
    assert int(first["queue_position"]) == 2
    assert first.get("idle_bots", 0) == 0
    assert second.get("current", False) is False
    assert second["idle_bots"] == 1
    assert second.get("unmatched_dimensions", []) == []


async def test_queues_count_their_pending_tasks_and_matching_bots(services: Services) -> None:
    """Each queue reports its queued tasks (paused ones are out) and its bots by state,
    deepest queue first; queues with nothing queued only on request."""
    await services.bot("idle")
    await services.bot("busy", task_id="1230")
    await services.bot("dead", age=601)
    mac = [("os", "Mac"), ("pool", "default")]
    for _ in range(3):
        await services.task(mac)
    linux = await services.task(LINUX)
    paused = await services.task(LINUX)
    await services.tasks.pause(paused)
    done = await services.task([("pool", "default")])
    await services.tasks.cancel(done, kill_running=False)
    page = await services.pending.queues(10)
    assert page.cursor == ""
    assert [(q.dimensions, q.pending) for q in page.items] == [(mac, 3), (LINUX, 1)]
    mac_queue, linux_queue = page.items
    assert mac_queue.bots.unmatched_dimensions == ["os:Mac"]
    assert (mac_queue.bots.idle_bots, mac_queue.bots.bot_ids) == (0, [])
    assert linux_queue.bots.bot_ids == ["idle", "busy", "dead"]
    assert counts(linux_queue.bots) == (1, 1, 0, 1)
    assert (
        pending.reason(linux_queue.bots)
        == "1 matching bot is idle: the next poll of one should take it"
    )
    everything = await services.pending.queues(10, include_empty=True)
    assert [q.pending for q in everything.items] == [3, 1, 0]
    await services.tasks.cancel(linux, kill_running=False)
    assert [q.pending for q in (await services.pending.queues(10)).items] == [3]


async def test_queue_pages_follow_each_other(services: Services) -> None:
    """A cursor continues where the page stopped; a bad limit or cursor is refused."""
    for n in range(3):
        for _ in range(n + 1):
            await services.task([("os", f"os{n}"), ("pool", "default")])
    first = await services.pending.queues(2)
    assert [q.pending for q in first.items] == [3, 2]
    second = await services.pending.queues(2, first.cursor)
    assert ([q.pending for q in second.items], second.cursor) == ([1], "")
    for limit, cursor in ((0, ""), (pending.MAX_QUEUE_PAGE + 1, ""), (2, "abc")):
        with pytest.raises(InvalidRequest):
            await services.pending.queues(limit, cursor)


def test_reasons_name_what_keeps_work_waiting() -> None:
    """The reason names idle bots first, then busy, quarantined, missing dimensions, dead."""

    def why(idle: int, busy: int, quarantined: int, dead: int, unmatched: list[str]) -> str:
        return pending.reason(pending.BotMatch(idle, busy, quarantined, dead, unmatched, []))

    assert why(2, 1, 0, 0, []) == "2 matching bots are idle: the next poll of one should take it"
    assert why(0, 2, 1, 0, []) == (
        "every live bot that matches is busy: 2 matching bots are busy, "
        "1 matching bot is quarantined"
    )
    assert why(0, 0, 1, 3, []) == (
        "every live bot that matches is quarantined or in maintenance: "
        "1 matching bot is quarantined"
    )
    assert why(0, 0, 0, 2, ["gpu:a100"]) == "no live bot has gpu:a100; 2 matching bots are dead"
    assert why(0, 0, 0, 1, []) == "only dead bots match: 1 matching bot is dead"
    assert why(0, 0, 0, 0, []) == "no bot has all of these dimensions together"


async def test_queue_depth_leaves_out_expired_tasks(services: Services) -> None:
    """A task past its slice's expiration that the sweeper has not ended yet no longer counts."""
    await services.task(LINUX)
    services.clock.advance(200)
    await services.task(LINUX)
    assert [q.pending for q in (await services.pending.queues(10)).items] == [2]
    services.clock.advance(150)
    assert [q.pending for q in (await services.pending.queues(10)).items] == [1]
