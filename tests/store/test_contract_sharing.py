"""The Store contract with several stores on one database, run against every backend.

Several stores opened on the database of `store` stand for several server
processes on one SQLite file, or several replicas on one Datastore
namespace: each has its own connection (client, threads) and caches. What
one writes, the others read; atomic operations stay atomic across them.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from server.errors import Conflict
from server.model import Queue, TaskQuery, TaskReport, UnitResult
from server.store.base import StaleWrite, Store
from tests.store.backends import Backend, RaceArranger, ReplicaOpener
from tests.store.records import NOW, add_task, claim, make_task, take, task_id


async def test_replicas_share_tasks(store: Store, open_replica: ReplicaOpener) -> None:
    """A task created through one store is read and claimed through another."""
    other = await open_replica()
    created = await add_task(store, 1)
    assert await other.get_result(task_id(1)) == created
    assert await claim(other) == task_id(1)
    assert await claim(store) == ""


async def test_concurrent_claims_across_replicas_are_exclusive(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """Claimers on three stores, all at once, take every task exactly once."""
    replicas = [store, await open_replica(), await open_replica()]
    for n in range(1, 31):
        await add_task(replicas[n % 3], n)

    async def claimer(replica: Store, bot_id: str) -> list[str]:
        got: list[str] = []
        while task := await claim(replica, bot_id):
            got.append(task)
        return got

    results = await asyncio.gather(
        *(claimer(replica, f"bot{i}-{j}") for i, replica in enumerate(replicas) for j in range(4))
    )
    claimed = [t for got in results for t in got]
    assert sorted(claimed) == [task_id(n) for n in range(1, 31)]
    for n in range(1, 31):
        result = await store.get_result(task_id(n))
        assert result is not None
        assert result.try_number == 1


async def test_concurrent_compare_and_set_has_one_winner(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """Of many writes from one version through two stores, one lands and the rest are stale."""
    other = await open_replica()
    stored = await add_task(store, 1)

    async def write(replica: Store, n: int) -> str:
        try:
            await replica.update_result(dataclasses.replace(stored, name=f"writer {n}"))
        except StaleWrite:
            return ""
        return f"writer {n}"

    outcomes = await asyncio.gather(*(write(store if n % 2 else other, n) for n in range(8)))
    winners = [o for o in outcomes if o]
    assert len(winners) == 1
    final = await other.get_result(task_id(1))
    assert final is not None
    assert (final.name, final.version) == (winners[0], stored.version + 1)


async def test_concurrent_request_uuid_creates_one_task(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """Creations with one request_uuid racing through two stores store one task, returned to all."""
    other = await open_replica()
    outcomes = await asyncio.gather(
        *(
            (store if n % 2 else other).create_task(*make_task(n, request_uuid="same"))
            for n in range(1, 7)
        )
    )
    assert [created for _, created in outcomes].count(True) == 1
    assert len({result.task_id for result, _ in outcomes}) == 1
    assert len((await store.list_tasks(TaskQuery())).items) == 1


async def test_concurrent_ensure_queue_is_new_once(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """Of stores recording one queue at once, exactly one learns it is new."""
    other = await open_replica()
    queue = Queue(key="k1", dimensions=[("pool", "a")], created_ts=NOW)
    novel = await asyncio.gather(*(s.ensure_queue(queue) for s in [store, other, store, other]))
    assert novel.count(True) == 1
    assert await other.list_queues() == [queue]


async def test_queues_recorded_elsewhere_are_listed(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """A queue recorded through another store appears in the next listing, after the known ones."""
    other = await open_replica()
    first = Queue(key="k1", dimensions=[("pool", "a")], created_ts=NOW)
    second = Queue(key="k2", dimensions=[("pool", "b")], created_ts=NOW + 1)
    await store.ensure_queue(first)
    assert await other.list_queues() == [first]
    await store.ensure_queue(second)
    assert await other.list_queues() == [first, second]


async def test_concurrent_keyed_reports_count_once(
    store: Store, open_replica: ReplicaOpener
) -> None:
    """A keyed report resent through two stores at once is stored once."""
    other = await open_replica()
    report = TaskReport(unit=[UnitResult(name="t", result="pass")])
    await asyncio.gather(*(s.add_report("aaa0", report, key="run:0") for s in [store, other] * 2))
    assert (await store.get_report("aaa0")).unit == report.unit


async def test_queues_with_work_across_stores(store: Store, open_replica: ReplicaOpener) -> None:
    """A queue has work for every store once another queued a task there, until it is claimed."""
    other = await open_replica()
    await add_task(store, 1, queue_key="q1")
    await add_task(store, 2, queue_key="q2", expiration_ts=NOW)
    await add_task(store, 3, queue_key="q3", paused=True)
    await add_task(store, 4, queue_key="q4")
    assert await claim(store, keys=("q4",)) == task_id(4)
    keys = ["q1", "q2", "q3", "q4", "q5"]
    assert await other.queues_with_work(keys, NOW) == {"q1"}
    assert await other.queues_with_work([], NOW) == set()
    assert await claim(other) == task_id(1)
    assert await store.queues_with_work(keys, NOW) == set()


async def test_claim_skips_candidate_taken_meanwhile(
    store: Store, race_after_heads: RaceArranger
) -> None:
    """A head that another store claims after it was read is passed over for the next."""
    await add_task(store, 1, priority=1)
    await add_task(store, 2, priority=2)

    async def steal(other: Store) -> None:
        stolen = await other.claim_next(["q1"], NOW, take("thief"))
        assert stolen is not None

    race_after_heads(steal)
    assert await claim(store, "bot1") == task_id(2)
    result = await store.get_result(task_id(1))
    assert result is not None
    assert result.bot_id == "thief"


async def test_claim_skips_candidate_moved_meanwhile(
    store: Store, race_after_heads: RaceArranger
) -> None:
    """A head moved to a queue the bot did not ask for, after it was read, is passed over."""
    first = await add_task(store, 1, priority=1)
    await add_task(store, 2, priority=2)

    async def move(other: Store) -> None:
        await other.update_result(dataclasses.replace(first, queue_key="q2"))

    race_after_heads(move)
    assert await claim(store, "bot1") == task_id(2)
    assert await claim(store, "bot1", keys=("q2",)) == task_id(1)


async def test_duplicate_task_id_is_a_conflict(store: Store) -> None:
    """Creating a task whose ID exists raises Conflict and leaves the first task whole."""
    first = await add_task(store, 1, tags=("a:b",))
    with pytest.raises(Conflict, match="already exists"):
        await store.create_task(*make_task(1, priority=1, tags=("c:d",)))
    assert await store.get_result(task_id(1)) == first
    assert (await store.list_tasks(TaskQuery(tags=["c:d"]))).items == []


async def test_close_twice_is_harmless(store: Store, backend: Backend) -> None:
    """A closed store can be closed again, and refuses further calls."""
    await store.close()
    await store.close()
    with pytest.raises(backend.closed_error):
        await store.get_bot("b1")
