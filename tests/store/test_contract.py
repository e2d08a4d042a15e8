"""The Store contract (server/store/base.py), run against every backend.

Tests here go only through the Store protocol, so each new backend must
pass them unchanged; what is specific to one backend lives in its own file.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from server.errors import InvalidRequest, TaskNotFound
from server.model import Queue, TaskQuery, TaskResult, TaskState
from server.store.base import StaleWrite, Store
from tests.store.records import NOW, add_task, claim, make_task, take, task_id

# Queues.


async def test_ensure_queue_reports_novelty(store: Store) -> None:
    """ensure_queue is True only the first time, and list_queues returns the queues."""
    q1 = Queue(key="k1", dimensions=[("pool", "a")], created_ts=NOW)
    q2 = Queue(key="k2", dimensions=[("os", "Linux|Mac"), ("pool", "a")], created_ts=NOW + 1)
    assert await store.ensure_queue(q1)
    assert not await store.ensure_queue(q1)
    assert await store.ensure_queue(q2)
    assert sorted(await store.list_queues(), key=lambda q: q.key) == [q1, q2]


# Tasks.


async def test_create_task_round_trip(store: Store) -> None:
    """A created task's request and result read back equal."""
    request, result = make_task(1, tags=("a:b",))
    assert await store.create_task(request, result) == (result, True)
    assert await store.get_request(request.task_id) == request
    assert await store.get_result(request.task_id) == result


async def test_get_unknown_task(store: Store) -> None:
    """An unknown task ID reads as None."""
    assert await store.get_request(task_id(9)) is None
    assert await store.get_result(task_id(9)) is None


async def test_peek_result_reads_what_get_result_reads(store: Store) -> None:
    """Within one store, peek_result gives the stored result, or None for an unknown task."""
    stored = await add_task(store, 1)
    assert await store.peek_result(task_id(1)) == stored
    updated = await store.update_result(dataclasses.replace(stored, name="renamed"))
    assert await store.peek_result(task_id(1)) == updated
    assert await store.peek_result(task_id(9)) is None


async def test_create_task_deduplicates_request_uuid(store: Store) -> None:
    """A second task with a known request_uuid stores nothing and returns the first."""
    first = await add_task(store, 1, request_uuid="uuid-1")
    got, created = await store.create_task(*make_task(2, request_uuid="uuid-1"))
    assert (got, created) == (first, False)
    assert await store.get_request(task_id(2)) is None
    assert await claim(store) == task_id(1)
    assert await claim(store) == ""


async def test_create_task_without_uuid_never_deduplicates(store: Store) -> None:
    """Tasks without a request_uuid are all stored."""
    await add_task(store, 1)
    await add_task(store, 2)
    assert await store.get_result(task_id(2)) is not None


async def test_update_result_bumps_version(store: Store) -> None:
    """update_result stores the record with version + 1 and returns it."""
    stored = await add_task(store, 1)
    running = dataclasses.replace(stored, state=TaskState.RUNNING, bot_id="b1")
    updated = await store.update_result(running)
    assert updated == dataclasses.replace(running, version=stored.version + 1)
    assert await store.get_result(task_id(1)) == updated


async def test_update_result_stale_version(store: Store) -> None:
    """A write based on an old version raises StaleWrite and changes nothing."""
    stored = await add_task(store, 1)
    first = await store.update_result(dataclasses.replace(stored, name="first"))
    with pytest.raises(StaleWrite):
        await store.update_result(dataclasses.replace(stored, name="second"))
    assert await store.get_result(task_id(1)) == first


async def test_update_result_unknown_task(store: Store) -> None:
    """Updating a task that does not exist raises TaskNotFound."""
    _, result = make_task(1)
    with pytest.raises(TaskNotFound):
        await store.update_result(result)


async def test_claim_order(store: Store) -> None:
    """Claims go by priority number, then age, then task ID."""
    await add_task(store, 1, priority=200, created_ts=NOW - 50)
    await add_task(store, 2, priority=100, created_ts=NOW - 10)
    await add_task(store, 3, priority=100, created_ts=NOW - 20)
    await add_task(store, 5, priority=100, created_ts=NOW - 5)
    await add_task(store, 4, priority=100, created_ts=NOW - 5)
    order = [await claim(store) for _ in range(6)]
    assert order == [task_id(n) for n in (3, 2, 4, 5, 1)] + [""]


async def test_claim_merges_queues(store: Store) -> None:
    """The best task across all the given queues wins; other queues are not looked at."""
    await add_task(store, 1, queue_key="a", priority=50)
    await add_task(store, 2, queue_key="b", priority=10)
    await add_task(store, 3, queue_key="c", priority=1)
    assert await claim(store, keys=("a", "b")) == task_id(2)
    assert await claim(store, keys=("a", "b")) == task_id(1)
    assert await claim(store, keys=("a", "b")) == ""
    assert await claim(store, keys=("c",)) == task_id(3)


async def test_claim_stores_assigned_record(store: Store) -> None:
    """The claimed record is stored with the version bumped and leaves the queue."""
    stored = await add_task(store, 1)
    got = await store.claim_next(["q1"], NOW, take("b1"))
    assert got is not None
    assert (got.state, got.bot_id, got.version) == (TaskState.RUNNING, "b1", stored.version + 1)
    assert await store.get_result(task_id(1)) == got
    assert await claim(store) == ""


async def test_claim_skips_expired(store: Store) -> None:
    """A task whose expiration_ts is not after `now` is not handed out."""
    await add_task(store, 1, expiration_ts=NOW, priority=1)
    await add_task(store, 2, expiration_ts=NOW + 1, priority=2)
    assert await claim(store) == task_id(2)
    assert await claim(store) == ""


async def test_claim_skips_declined(store: Store) -> None:
    """When assign returns None, the next candidate is offered and the declined one stays."""
    for n in range(1, 21):
        await add_task(store, n, priority=n)
    offered: list[str] = []

    def assign(r: TaskResult) -> TaskResult | None:
        offered.append(r.task_id)
        return None if r.priority < 15 else dataclasses.replace(r, state=TaskState.RUNNING)

    got = await store.claim_next(["q1"], NOW, assign)
    assert got is not None
    assert got.task_id == task_id(15)
    assert offered == [task_id(n) for n in range(1, 16)]
    assert await claim(store) == task_id(1)


async def test_claim_assign_error_leaves_task(store: Store) -> None:
    """An exception in assign propagates and the task stays claimable."""
    await add_task(store, 1)

    def boom(r: TaskResult) -> TaskResult:
        raise RuntimeError("assign failed")

    with pytest.raises(RuntimeError, match="assign failed"):
        await store.claim_next(["q1"], NOW, boom)
    assert await claim(store) == task_id(1)


async def test_claim_nothing(store: Store) -> None:
    """Empty, unknown or absent queues give None."""
    assert await claim(store) == ""
    assert await claim(store, keys=()) == ""


async def test_queue_place_follows_updates(store: Store) -> None:
    """A paused or non-pending task leaves its queue; making it dispatchable requeues it."""
    stored = await add_task(store, 1)
    paused = await store.update_result(dataclasses.replace(stored, paused=True))
    assert await claim(store) == ""
    moved = dataclasses.replace(paused, paused=False, queue_key="q2")
    back = await store.update_result(moved)
    assert await claim(store, keys=("q1",)) == ""
    assert await claim(store, keys=("q2",)) == task_id(1)
    assert back.version == stored.version + 2


async def test_concurrent_claims_are_exclusive(store: Store) -> None:
    """Many claims at once hand each task to exactly one claimer."""
    for n in range(1, 11):
        await add_task(store, n)
    got = await asyncio.gather(*(claim(store, f"bot{i}") for i in range(15)))
    claimed = [t for t in got if t]
    assert sorted(claimed) == [task_id(n) for n in range(1, 11)]
    assert got.count("") == 5


async def test_list_tasks_newest_first_paged(store: Store) -> None:
    """Tasks list newest first across pages, ties broken by ID."""
    for n in range(1, 6):
        await add_task(store, n, created_ts=NOW + n // 2)
    first = await store.list_tasks(TaskQuery(limit=3))
    second = await store.list_tasks(TaskQuery(limit=3, cursor=first.cursor))
    ids = [t.task_id for t in first.items + second.items]
    assert ids == [task_id(n) for n in (5, 4, 3, 2, 1)]
    assert second.cursor == ""


async def test_list_tasks_filters(store: Store) -> None:
    """States, tags (all of them), bot and created range each narrow the listing."""
    await add_task(store, 1, tags=("os:linux", "team:a"), created_ts=NOW + 1)
    await add_task(store, 2, tags=("os:linux",), created_ts=NOW + 2)
    await add_task(
        store, 3, tags=("team:a",), created_ts=NOW + 3, state=TaskState.COMPLETED, bot_id="b1"
    )

    async def ids(**kwargs: Any) -> list[str]:
        page = await store.list_tasks(TaskQuery(**kwargs))
        return [t.task_id for t in page.items]

    assert await ids(states=frozenset({TaskState.PENDING})) == [task_id(2), task_id(1)]
    assert await ids(states=frozenset({TaskState.COMPLETED, TaskState.PENDING})) == [
        task_id(3),
        task_id(2),
        task_id(1),
    ]
    assert await ids(tags=["os:linux", "team:a"]) == [task_id(1)]
    assert await ids(tags=["team:a"]) == [task_id(3), task_id(1)]
    assert await ids(tags=["team:b"]) == []
    assert await ids(bot_id="b1") == [task_id(3)]
    assert await ids(created_after=NOW + 2) == [task_id(3), task_id(2)]
    assert await ids(created_before=NOW + 2) == [task_id(1)]


async def test_list_tasks_bad_cursor(store: Store) -> None:
    """A damaged cursor is an InvalidRequest."""
    with pytest.raises(InvalidRequest, match="cursor"):
        await store.list_tasks(TaskQuery(cursor="%%%"))


async def test_list_due(store: Store) -> None:
    """Due are active tasks past a slice expiration, a liveness deadline or a reservation."""
    await add_task(store, 1, expiration_ts=NOW - 1)
    await add_task(store, 2, expiration_ts=NOW + 100)
    await add_task(store, 3, state=TaskState.RUNNING, dead_after_ts=NOW - 5)
    await add_task(store, 4, state=TaskState.RUNNING, reserved_until=NOW)
    await add_task(store, 5, state=TaskState.RUNNING, reserved_until=NOW + 5)
    await add_task(store, 6, state=TaskState.RUNNING, dead_after_ts=NOW + 5)
    await add_task(store, 7, state=TaskState.COMPLETED, expiration_ts=NOW - 1)
    await add_task(store, 8, expiration_ts=NOW - 1, paused=True)
    due = await store.list_due(NOW, 100)
    assert sorted(r.task_id for r in due) == [task_id(n) for n in (1, 3, 4, 8)]
    assert len(await store.list_due(NOW, 2)) == 2


async def test_list_due_includes_ended_tasks_with_children_to_stop(store: Store) -> None:
    """An ended task still marked `children_to_stop` is due from its end until unmarked."""
    stored = await add_task(
        store, 1, state=TaskState.COMPLETED, completed_ts=NOW - 3, children_to_stop=True
    )
    await add_task(store, 2, state=TaskState.CANCELED, completed_ts=NOW - 3)
    await add_task(store, 3, expiration_ts=NOW + 100, children_to_stop=True)
    await add_task(store, 4, state=TaskState.EXPIRED, completed_ts=NOW + 5, children_to_stop=True)
    assert [r.task_id for r in await store.list_due(NOW, 10)] == [task_id(1)]
    await store.update_result(dataclasses.replace(stored, children_to_stop=False))
    assert await store.list_due(NOW, 10) == []


async def test_list_due_includes_active_children_at_their_parent_check(store: Store) -> None:
    """An active child is due at its parent check if that comes before its other deadlines,
    and no longer once the check is cleared; an ended one's check is ignored."""
    pending = await add_task(store, 1, expiration_ts=NOW + 100, parent_check_ts=NOW - 1)
    await add_task(store, 2, state=TaskState.RUNNING, dead_after_ts=NOW + 50, parent_check_ts=NOW)
    await add_task(store, 3, expiration_ts=NOW + 100, parent_check_ts=NOW + 10)
    await add_task(store, 4, state=TaskState.CANCELED, completed_ts=NOW, parent_check_ts=NOW)
    due = await store.list_due(NOW, 10)
    assert [r.task_id for r in due] == [task_id(1), task_id(2)]
    await store.update_result(dataclasses.replace(pending, parent_check_ts=None))
    assert [r.task_id for r in await store.list_due(NOW, 10)] == [task_id(2)]


async def test_list_due_follows_updates(store: Store) -> None:
    """A task that completes is no longer due."""
    stored = await add_task(store, 1, expiration_ts=NOW - 1)
    await store.update_result(dataclasses.replace(stored, state=TaskState.EXPIRED))
    assert await store.list_due(NOW, 10) == []
