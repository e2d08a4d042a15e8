"""The SQLite backend's task counts: the schema step behind any_failed, what counts cost.

What they return is the Store contract (test_contract_listing.py); here is
what only SQLite has: the `failed` column filled in for existing databases,
counts that read index entries in proportion to what they count, and that
read in a thread of their own (server/store/sqlite_reader.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sqlite3
import threading
from typing import Any

import pytest

from server.model import TaskQuery, TaskState
from server.store import codec, sqlite_schema, sqlite_task_queries
from server.store.sqlite import SqliteStore
from tests.store.records import NOW, add_task, make_task, task_id
from tests.store.test_sqlite_lookups import sqlite_steps

DONE: dict[str, Any] = {"state": TaskState.COMPLETED, "queue_key": ""}


async def test_migration_marks_the_failed_results_of_an_existing_database(
    tmp_path: pathlib.Path,
) -> None:
    """Results stored before the step are marked failed from their records, JSON or not."""
    ok = make_task(1, exit_code=0, tags=("rev:1",), **DONE)[1]
    failed = make_task(2, exit_code=1, failure=True, tags=("rev:2",), **DONE)[1]
    # A float that is not finite: the record is the standard library's text, not JSON.
    odd = make_task(3, exit_code=1, failure=True, cost_usd=float("inf"), tags=("rev:3",), **DONE)
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    sqlite_schema.migrate(db, sqlite_schema.MIGRATIONS[:-1])
    for n, result in enumerate([ok, failed, odd[1]]):
        db.execute(
            "INSERT INTO task_results (task_id, state, created_ts, bot_id, due_ts, tags,"
            " version, data) VALUES (?, ?, ?, '', NULL, ?, 0, ?)",
            (result.task_id, result.state.value, NOW + n, "[]", codec.dumps(result)),
        )
        db.executemany(
            "INSERT INTO task_tags (tag, task_id) VALUES (?, ?)",
            [(tag, result.task_id) for tag in result.tags],
        )
    assert "Infinity" in codec.dumps(odd[1])
    db.close()
    store = await SqliteStore.open(path)
    try:
        assert not await store.any_failed(TaskQuery(tags=["rev:1"]))
        assert await store.any_failed(TaskQuery(tags=["rev:2"]))
        assert await store.any_failed(TaskQuery(tags=["rev:3"]))
    finally:
        await store.close()


async def test_a_count_reads_what_it_counts_not_the_rest(sqlite_store: SqliteStore) -> None:
    """Counting one state reads its own index range: other states' tasks cost nothing."""
    for n in range(10):
        await add_task(sqlite_store, n, state=TaskState.PENDING)
    query = TaskQuery(states=frozenset({TaskState.PENDING}))

    async def count() -> dict[TaskState, int]:
        # The store's reader thread runs this same function on its own connection.
        return sqlite_task_queries.count_tasks(sqlite_store.connection, query, None)

    _, few = await sqlite_steps(sqlite_store, count)
    for n in range(100, 1100):
        await add_task(sqlite_store, n, **DONE)
    counts, many = await sqlite_steps(sqlite_store, count)
    assert counts == {TaskState.PENDING: 10}
    assert many <= few * 1.2


async def test_a_count_runs_off_the_loop_and_sees_what_was_committed(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a count waits in its thread, the loop serves other calls; it sees their commits."""
    await add_task(sqlite_store, 1)
    started, release = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    real = sqlite_task_queries.count_tasks

    def held_count(db: sqlite3.Connection, query: TaskQuery, cap: int | None) -> Any:
        threads.append(threading.current_thread())
        started.set()
        assert release.wait(10)
        return real(db, query, cap)

    monkeypatch.setattr(sqlite_task_queries, "count_tasks", held_count)
    counting = asyncio.ensure_future(sqlite_store.count_tasks(TaskQuery()))
    assert await asyncio.to_thread(started.wait, 10)
    assert await sqlite_store.get_result(task_id(1)) is not None
    await add_task(sqlite_store, 2)
    release.set()
    counts = await counting
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()
    assert counts[TaskState.PENDING] == 2


async def test_any_failed_ignores_the_tasks_that_succeeded(sqlite_store: SqliteStore) -> None:
    """Whether a selection failed is one look in the partial index, however many succeeded."""
    failed = await add_task(sqlite_store, 1, **DONE)
    await sqlite_store.update_result(dataclasses.replace(failed, failure=True, exit_code=1))
    _, few = await sqlite_steps(sqlite_store, lambda: sqlite_store.any_failed(TaskQuery()))
    for n in range(100, 1100):
        await add_task(sqlite_store, n, exit_code=0, **DONE)
    found, many = await sqlite_steps(sqlite_store, lambda: sqlite_store.any_failed(TaskQuery()))
    assert found
    assert many <= few * 1.2
