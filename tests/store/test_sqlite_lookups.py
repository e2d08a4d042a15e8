"""The SQLite backend's dedup and queue-position lookups: their migration and their cost.

What they return is the Store contract (test_contract_lookups.py); here is
what only SQLite has: the schema step that added them to existing
databases, and the indexes that keep them cheap.
"""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from server.model import TaskQuery, TaskState
from server.store import codec, sqlite_schema
from server.store.sqlite import SqliteStore
from tests.store.records import NOW, add_task, make_task, task_id

T = TypeVar("T")
HASH = "a" * 64


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A fresh SqliteStore in tmp_path, closed at teardown."""
    opened = await SqliteStore.open(tmp_path / "drover.sqlite3")
    yield opened
    await opened.close()


async def sqlite_steps(store: SqliteStore, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """Runs `call` and counts the SQLite virtual machine steps it took."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.connection.set_progress_handler(tick, 1)
    try:
        return await call(), steps
    finally:
        store.connection.set_progress_handler(None, 1)


async def test_migration_indexes_existing_sources(tmp_path: pathlib.Path) -> None:
    """Opening a version-1 database makes its successful runs findable, and only those."""
    done: dict[str, Any] = {
        "state": TaskState.COMPLETED,
        "queue_key": "",
        "exit_code": 0,
        "properties_hash": HASH,
    }
    results = [
        make_task(1, completed_ts=NOW - 5, **done)[1],
        make_task(2, completed_ts=NOW - 1, **{**done, "exit_code": 1, "failure": True})[1],
        make_task(3, completed_ts=NOW - 2, deduped_from=task_id(1), **done)[1],
    ]
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    sqlite_schema.migrate(db, sqlite_schema.MIGRATIONS[:1])
    db.executemany(
        "INSERT INTO task_results (task_id, state, created_ts, bot_id, due_ts, tags,"
        " version, data) VALUES (?, ?, ?, '', NULL, '[]', 0, ?)",
        [(r.task_id, r.state.value, r.created_ts, codec.dumps(r)) for r in results],
    )
    db.close()
    store = await SqliteStore.open(path)
    try:
        assert await store.find_reusable(HASH, NOW - 60) == results[0]
        columns = store.connection.execute(
            "SELECT task_id, completed_ts FROM task_results ORDER BY task_id"
        ).fetchall()
        assert columns == [(task_id(1), NOW - 5), (task_id(2), NOW - 1), (task_id(3), NOW - 2)]
    finally:
        await store.close()


async def test_find_reusable_cost_ignores_other_runs(store: SqliteStore) -> None:
    """Finding a source takes the same work however many other runs are stored."""

    async def add_runs(first: int, count: int, properties_hash: str) -> None:
        for n in range(first, first + count):
            await add_task(
                store,
                n,
                state=TaskState.COMPLETED,
                queue_key="",
                exit_code=0,
                completed_ts=NOW - n / 1e6,
                properties_hash=properties_hash,
            )

    await add_runs(1, 5, HASH)
    _, few = await sqlite_steps(store, lambda: store.find_reusable(HASH, NOW - 60))
    await add_runs(100, 1000, HASH)
    await add_runs(2000, 1000, "b" * 64)
    found, many = await sqlite_steps(store, lambda: store.find_reusable(HASH, NOW - 60))
    assert found is not None
    assert found.task_id == task_id(1)
    # A scan would cost thousands of steps; a seek from the index's end costs the same.
    assert many <= few * 1.2


async def test_queue_position_cost_ignores_other_queues(store: SqliteStore) -> None:
    """Counting the tasks ahead reads only its own queue's index range."""
    mine = await add_task(store, 1, queue_key="mine", priority=200)
    await add_task(store, 2, queue_key="mine", priority=1)
    position, few = await sqlite_steps(store, lambda: store.queue_position(mine))
    assert position == 1
    for n in range(1000, 2000):
        await add_task(store, n, queue_key="other", priority=1)
    position, many = await sqlite_steps(store, lambda: store.queue_position(mine))
    assert position == 1
    assert many <= few * 1.2


async def test_count_queued_cost_ignores_other_queues(store: SqliteStore) -> None:
    """Counting a queue reads only its own queue's index range."""
    await add_task(store, 1, queue_key="mine")
    await add_task(store, 2, queue_key="mine")
    counted, few = await sqlite_steps(store, lambda: store.count_queued("mine", NOW))
    assert counted == 2
    for n in range(1000, 2000):
        await add_task(store, n, queue_key="other")
    counted, many = await sqlite_steps(store, lambda: store.count_queued("mine", NOW))
    assert counted == 2
    assert many <= few * 1.2


async def test_list_by_bot_cost_ignores_queued_and_other_bots_tasks(store: SqliteStore) -> None:
    """Listing a bot's tasks reads only that bot's range of the index."""
    await add_task(store, 1, bot_id="mine", state=TaskState.COMPLETED)
    query = TaskQuery(bot_id="mine", limit=10)
    page, few = await sqlite_steps(store, lambda: store.list_tasks(query))
    assert [r.task_id for r in page.items] == [task_id(1)]
    for n in range(1000, 1500):
        await add_task(store, n)
        await add_task(store, n + 1000, bot_id="other", state=TaskState.COMPLETED)
    page, many = await sqlite_steps(store, lambda: store.list_tasks(query))
    assert [r.task_id for r in page.items] == [task_id(1)]
    assert many <= few * 1.2
