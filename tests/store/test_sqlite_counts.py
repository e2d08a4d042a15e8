"""The SQLite backend's task counts: the schema step behind any_failed, and what counts cost.

What they return is the Store contract (test_contract_listing.py); here is
what only SQLite has: the `failed` column filled in for existing databases,
and counts that read index entries in proportion to what they count.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
from typing import Any

from server.model import TaskQuery, TaskState
from server.store import codec, sqlite_schema
from server.store.sqlite import SqliteStore
from tests.store.records import NOW, add_task, make_task
from tests.store.test_sqlite_lookups import sqlite_steps, store

__all__ = ["store"]

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


async def test_a_count_reads_what_it_counts_not_the_rest(store: SqliteStore) -> None:
    """Counting one state reads its own index range: other states' tasks cost nothing."""
    for n in range(10):
        await add_task(store, n, state=TaskState.PENDING)
    query = TaskQuery(states=frozenset({TaskState.PENDING}))
    _, few = await sqlite_steps(store, lambda: store.count_tasks(query))
    for n in range(100, 1100):
        await add_task(store, n, **DONE)
    counts, many = await sqlite_steps(store, lambda: store.count_tasks(query))
    assert counts == {TaskState.PENDING: 10}
    assert many <= few * 1.2


async def test_any_failed_ignores_the_tasks_that_succeeded(store: SqliteStore) -> None:
    """Whether a selection failed is one look in the partial index, however many succeeded."""
    failed = await add_task(store, 1, **DONE)
    await store.update_result(dataclasses.replace(failed, failure=True, exit_code=1))
    _, few = await sqlite_steps(store, lambda: store.any_failed(TaskQuery()))
    for n in range(100, 1100):
        await add_task(store, n, exit_code=0, **DONE)
    found, many = await sqlite_steps(store, lambda: store.any_failed(TaskQuery()))
    assert found
    assert many <= few * 1.2
