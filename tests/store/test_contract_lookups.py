"""The Store contract, continued: the lookups behind dedup and "why pending".

Like test_contract.py, these go only through the Store protocol and run
against every backend registered in conftest.BACKENDS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from server.model import TaskResult, TaskState
from server.store.base import Store
from tests.store.records import NOW, add_task, claim, task_id

HASH = "a" * 64
OTHER_HASH = "b" * 64

# find_reusable.


async def add_done(
    store: Store, n: int, completed_ts: float | None = NOW, **changes: Any
) -> TaskResult:
    """Stores task `n` as a successful original run with properties hash HASH."""
    fields: dict[str, Any] = {
        "state": TaskState.COMPLETED,
        "queue_key": "",
        "try_number": 1,
        "exit_code": 0,
        "completed_ts": completed_ts,
        "properties_hash": HASH,
    }
    fields.update(changes)
    return await add_task(store, n, **fields)


async def test_find_reusable_finds_a_successful_run(store: Store) -> None:
    """A COMPLETED, successful original with the hash is found; other hashes find nothing."""
    done = await add_done(store, 1)
    assert await store.find_reusable(HASH, NOW - 60) == done
    assert await store.find_reusable(OTHER_HASH, NOW - 60) is None


async def test_find_reusable_empty_hash_matches_nothing(store: Store) -> None:
    """An empty hash never matches, not even results stored without a hash."""
    await add_done(store, 1, properties_hash="")
    assert await store.find_reusable("", NOW - 60) is None


async def test_find_reusable_skips_failures_and_copies(store: Store) -> None:
    """Failed runs, other final states, active tasks and dedup copies are never sources."""
    await add_done(store, 1, exit_code=1, failure=True)
    await add_done(store, 2, state=TaskState.TIMED_OUT, failure=True, exit_code=-1)
    await add_done(store, 3, state=TaskState.KILLED, failure=True)
    await add_done(store, 4, state=TaskState.RUNNING, completed_ts=None)
    await add_done(store, 5, deduped_from=task_id(9), try_number=0)
    assert await store.find_reusable(HASH, NOW - 60) is None


async def test_find_reusable_window_is_inclusive(store: Store) -> None:
    """A run completed exactly at `completed_after` counts; one a moment earlier does not."""
    done = await add_done(store, 1, completed_ts=NOW - 100)
    assert await store.find_reusable(HASH, NOW - 100) == done
    assert await store.find_reusable(HASH, NOW - 99.5) is None


async def test_find_reusable_prefers_most_recent(store: Store) -> None:
    """The most recently completed source wins; between equal times, the higher task ID."""
    await add_done(store, 1, completed_ts=NOW - 30)
    await add_done(store, 2, completed_ts=NOW - 10)
    await add_done(store, 3, completed_ts=NOW - 20)
    found = await store.find_reusable(HASH, NOW - 60)
    assert found is not None
    assert found.task_id == task_id(2)
    await add_done(store, 4, completed_ts=NOW - 10)
    found = await store.find_reusable(HASH, NOW - 60)
    assert found is not None
    assert found.task_id == task_id(4)


async def test_find_reusable_follows_updates(store: Store) -> None:
    """A task that completes through update_result becomes a source; a later change undoes it."""
    pending = await add_task(store, 1)
    assert await store.find_reusable(HASH, NOW - 60) is None
    done = await store.update_result(
        dataclasses.replace(
            pending,
            state=TaskState.COMPLETED,
            queue_key="",
            exit_code=0,
            completed_ts=NOW,
            properties_hash=HASH,
        )
    )
    assert await store.find_reusable(HASH, NOW - 60) == done
    await store.update_result(dataclasses.replace(done, properties_hash=""))
    assert await store.find_reusable(HASH, NOW - 60) is None


# queue_position.


async def test_queue_position_follows_claim_order(store: Store) -> None:
    """Position counts the queued tasks before this one: priority, then age, then task ID."""
    tasks = [
        await add_task(store, 1, priority=200, created_ts=NOW - 50),
        await add_task(store, 2, priority=100, created_ts=NOW - 10),
        await add_task(store, 3, priority=100, created_ts=NOW - 20),
        await add_task(store, 5, priority=100, created_ts=NOW - 5),
        await add_task(store, 4, priority=100, created_ts=NOW - 5),
    ]
    positions = {t.task_id: await store.queue_position(t) for t in tasks}
    assert positions == {
        task_id(3): 0,
        task_id(2): 1,
        task_id(4): 2,
        task_id(5): 3,
        task_id(1): 4,
    }


async def test_queue_position_counts_only_queued_tasks_of_its_queue(store: Store) -> None:
    """Tasks of other queues, paused and claimed tasks are not ahead; expired queued ones are."""
    last = await add_task(store, 9, priority=200)
    await add_task(store, 1, priority=1, queue_key="other")
    paused = await add_task(store, 2, priority=1)
    await store.update_result(dataclasses.replace(paused, paused=True))
    await add_task(store, 3, priority=2)
    assert await claim(store) == task_id(3)
    assert await store.queue_position(last) == 0
    # Not claimable any more, but the sweeper has not ended it yet.
    await add_task(store, 4, priority=3, expiration_ts=NOW - 1)
    await add_task(store, 5, priority=4)
    assert await store.queue_position(last) == 2


async def test_queue_position_zero_when_not_queued(store: Store) -> None:
    """A paused, running, finished or unqueued task is at position 0, whatever is queued."""
    for n in range(1, 4):
        await add_task(store, n, priority=1)
    probes = [
        await add_task(store, 10, paused=True),
        await add_task(store, 11, state=TaskState.RUNNING, bot_id="b1"),
        await add_task(store, 12, state=TaskState.COMPLETED, completed_ts=NOW),
        await add_task(store, 13, queue_key=""),
    ]
    assert [await store.queue_position(r) for r in probes] == [0, 0, 0, 0]


# count_queued.


async def test_count_queued_counts_the_claimable_tasks_of_its_queue(store: Store) -> None:
    """Only unexpired queued tasks of the queue count: not other queues, paused,
    claimed, ended or expired ones."""
    for n in range(1, 4):
        await add_task(store, n)
    await add_task(store, 4, queue_key="other")
    await add_task(store, 5, paused=True)
    await add_task(store, 6, state=TaskState.COMPLETED, completed_ts=NOW)
    await add_task(store, 7, expiration_ts=NOW - 1)
    assert await store.count_queued("q1", NOW) == 3
    assert await store.count_queued("other", NOW) == 1
    assert await store.count_queued("nowhere", NOW) == 0
    assert await claim(store) == task_id(1)
    assert await store.count_queued("q1", NOW) == 2


async def test_count_queued_expiry_is_strict(store: Store) -> None:
    """A task expiring exactly at `now` no longer counts, as claim_next would not take it."""
    await add_task(store, 1, expiration_ts=NOW + 10)
    await add_task(store, 2, expiration_ts=NOW + 20)
    assert await store.count_queued("q1", NOW + 9.5) == 2
    assert await store.count_queued("q1", NOW + 10) == 1
    assert await store.count_queued("q1", NOW + 20) == 0


async def test_count_queued_follows_updates(store: Store) -> None:
    """Pausing takes a task out of the count, resuming puts it back, a new slice
    in another queue moves it there."""
    task = await add_task(store, 1)
    paused = await store.update_result(dataclasses.replace(task, paused=True))
    assert await store.count_queued("q1", NOW) == 0
    resumed = await store.update_result(dataclasses.replace(paused, paused=False))
    assert await store.count_queued("q1", NOW) == 1
    await store.update_result(dataclasses.replace(resumed, queue_key="q2", current_slice=1))
    assert (await store.count_queued("q1", NOW), await store.count_queued("q2", NOW)) == (0, 1)


async def test_count_queued_agrees_with_claim_next(store: Store) -> None:
    """Exactly as many claims succeed as count_queued counted."""
    for n in range(1, 6):
        await add_task(store, n, priority=n, expiration_ts=NOW + (-1 if n % 2 else 60))
    counted = await store.count_queued("q1", NOW)
    claimed = [await claim(store, f"bot{n}") for n in range(6)]
    assert counted == 2
    assert sum(1 for got in claimed if got) == counted
