"""mutate's compare-and-set when the caller hands it the record it has just read."""

from __future__ import annotations

import dataclasses

from server.model import TaskResult, evolve
from server.scheduler.mutation import mutate
from server.store.sqlite import SqliteStore
from tests.store.records import add_task


def renamed(result: TaskResult) -> TaskResult:
    return evolve(result, name=result.name + "+")


async def test_a_stale_read_is_refused_and_planned_again(sqlite_store: SqliteStore) -> None:
    """A copy older than the stored record costs a retry, never the change made meanwhile."""
    stale = await add_task(sqlite_store, 1)
    await sqlite_store.update_result(dataclasses.replace(stale, priority=7))
    stored, changed = await mutate(sqlite_store, stale.task_id, renamed, read=stale)
    assert changed
    assert (stored.name, stored.priority) == (stale.name + "+", 7)


async def test_no_change_is_decided_on_the_stored_record(sqlite_store: SqliteStore) -> None:
    """A copy that needs no change is not trusted: the stored record is planned from."""
    stale = await add_task(sqlite_store, 1)
    await sqlite_store.update_result(dataclasses.replace(stale, priority=7))
    seen: list[int] = []

    def only_from_7(result: TaskResult) -> TaskResult | None:
        seen.append(result.priority)
        return renamed(result) if result.priority == 7 else None

    stored, changed = await mutate(sqlite_store, stale.task_id, only_from_7, read=stale)
    assert changed
    assert seen == [stale.priority, 7]
    assert stored.name == stale.name + "+"
    unchanged, changed = await mutate(sqlite_store, stale.task_id, lambda r: None, read=stale)
    assert (changed, unchanged.version) == (False, stored.version)
