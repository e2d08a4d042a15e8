"""The task listing of the Store contract under every combination of its filters.

Run against every backend. On Datastore each combination is a query shape
of its own, and the emulator refuses one that needs an index
server/store/index.yaml lacks: so this also shows that the file covers
every listing the server can ask for.
"""

from __future__ import annotations

import dataclasses
import itertools

from server.model import TaskQuery, TaskResult, TaskState
from server.store.base import Store
from tests.store.records import NOW, add_task

STATES = [
    frozenset(),
    frozenset({TaskState.PENDING}),
    frozenset({TaskState.PENDING, TaskState.COMPLETED}),
]
TAGS = [[], ["os:linux"], ["os:linux", "team:a"]]
BOTS = ["", "b1"]
RANGES = [(None, None), (NOW + 1, None), (None, NOW + 4), (NOW + 1, NOW + 4)]


def matches(result: TaskResult, query: TaskQuery) -> bool:
    """What the contract says a listing holds, decided one task at a time."""
    return (
        (not query.states or result.state in query.states)
        and all(tag in result.tags for tag in query.tags)
        and (not query.bot_id or result.bot_id == query.bot_id)
        and (query.created_after is None or result.created_ts >= query.created_after)
        and (query.created_before is None or result.created_ts < query.created_before)
    )


async def list_all(store: Store, query: TaskQuery) -> list[str]:
    """The task IDs of every page of a listing, followed cursor by cursor."""
    ids: list[str] = []
    for _ in range(100):
        page = await store.list_tasks(query)
        ids.extend(result.task_id for result in page.items)
        if not page.cursor:
            return ids
        query = dataclasses.replace(query, cursor=page.cursor)
    raise AssertionError(f"{query} did not end within 100 pages")


async def test_every_filter_combination_pages_newest_first(store: Store) -> None:
    """Each combination of states, tags, bot and created range lists its tasks, newest first."""
    states = [TaskState.PENDING, TaskState.RUNNING, TaskState.COMPLETED]
    tag_sets = [("os:linux",), ("os:linux", "team:a"), ("team:a",), ()]
    tasks = [
        await add_task(
            store,
            n,
            # Pairs of tasks share a creation time: ties are broken by ID.
            created_ts=NOW + n // 2,
            state=states[n % 3],
            tags=tag_sets[n % 4],
            bot_id=["", "b1", "b2"][n % 3],
        )
        for n in range(12)
    ]
    newest_first = sorted(tasks, key=lambda r: (r.created_ts, r.task_id), reverse=True)
    for state_set, tags, bot_id, (after, before) in itertools.product(STATES, TAGS, BOTS, RANGES):
        query = TaskQuery(
            states=state_set,
            tags=tags,
            bot_id=bot_id,
            created_after=after,
            created_before=before,
            limit=2,
        )
        expected = [r.task_id for r in newest_first if matches(r, query)]
        assert await list_all(store, query) == expected, query


async def test_counts_per_state_match_the_listing_under_every_filter(store: Store) -> None:
    """count_tasks gives, per state asked for, how many tasks the same listing holds."""
    states = [TaskState.PENDING, TaskState.RUNNING, TaskState.COMPLETED]
    tasks = [
        await add_task(
            store,
            n,
            created_ts=NOW + n // 2,
            state=states[n % 3],
            tags=[("os:linux",), ("os:linux", "team:a"), ()][n % 3 if n < 6 else 1],
            bot_id=["", "b1", "b2"][n % 3],
        )
        for n in range(12)
    ]
    for state_set, tags, bot_id, (after, before) in itertools.product(STATES, TAGS, BOTS, RANGES):
        query = TaskQuery(
            states=state_set, tags=tags, bot_id=bot_id, created_after=after, created_before=before
        )
        expected = {
            state: sum(1 for r in tasks if r.state is state and matches(r, query))
            for state in (state_set or TaskState)
        }
        assert await store.count_tasks(query) == expected, query


async def test_a_capped_count_stops_at_the_cap(store: Store) -> None:
    """With a cap, each state's count stops there; states below it are exact."""
    for n in range(5):
        await add_task(store, n, state=TaskState.PENDING if n < 4 else TaskState.COMPLETED)
    pending_and_done = TaskQuery(states=frozenset({TaskState.PENDING, TaskState.COMPLETED}))
    assert await store.count_tasks(pending_and_done, cap=3) == {
        TaskState.PENDING: 3,
        TaskState.COMPLETED: 1,
    }
    assert (await store.count_tasks(TaskQuery(), cap=0))[TaskState.PENDING] == 0
    assert (await store.count_tasks(TaskQuery()))[TaskState.PENDING] == 4


async def test_any_failed_looks_at_the_completed_tasks_the_query_matches(store: Store) -> None:
    """Only a COMPLETED task with `failure` the filters select counts as failed."""
    await add_task(store, 1, state=TaskState.COMPLETED, tags=("rev:1",))
    await add_task(store, 2, state=TaskState.TIMED_OUT, failure=True, tags=("rev:1",))
    assert not await store.any_failed(TaskQuery(tags=["rev:1"]))
    failed = await add_task(store, 3, state=TaskState.RUNNING, tags=("rev:2",), created_ts=NOW + 5)
    assert not await store.any_failed(TaskQuery(tags=["rev:2"]))
    await store.update_result(
        dataclasses.replace(failed, state=TaskState.COMPLETED, failure=True, exit_code=1)
    )
    assert await store.any_failed(TaskQuery(tags=["rev:2"]))
    assert await store.any_failed(TaskQuery())
    assert not await store.any_failed(TaskQuery(tags=["rev:1"]))
    assert not await store.any_failed(TaskQuery(created_before=NOW + 5))
