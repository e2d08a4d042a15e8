"""What is specific to the Datastore backend: replicas sharing one database, races, entities.

Every test runs against the emulator (tests/store/datastore_emulator.py).
Several stores opened on one namespace stand for several server replicas
on one database: each has its own client, connection and threads. The
Store contract itself is tested in test_contract.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from server.clock import FakeClock
from server.errors import Conflict
from server.model import Queue, TaskQuery, TaskReport, TaskResult, UnitResult
from server.store import datastore_client, datastore_output, datastore_tasks
from server.store.base import OUTPUT_CHUNK_SIZE, StaleWrite
from server.store.datastore import DatastoreStore
from server.store.datastore_tasks import QueueEntry, queue_heads
from tests.store.datastore_emulator import Emulator, new_namespace
from tests.store.records import NOW, add_task, claim, make_task, take, task_id

pytestmark = pytest.mark.datastore

# Opens a store on the test's shared namespace (a replica), or on another one.
Opener = Callable[..., Awaitable[DatastoreStore]]


@pytest.fixture
async def open_store(datastore_emulator: Emulator) -> AsyncIterator[Opener]:
    """Opens DatastoreStores on one fresh namespace; all are closed at teardown."""
    namespace = new_namespace()
    opened: list[DatastoreStore] = []

    async def open_(clock: FakeClock | None = None, namespace: str = namespace) -> DatastoreStore:
        store = await datastore_emulator.open_store(namespace, clock=clock)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def entity_names(store: DatastoreStore, kind: str) -> list[str]:
    """The key names of every entity of `kind` in the store's namespace."""
    query = datastore_client.query(store.client, kind, keys_only=True)
    return sorted(str(e.key.name) for e in query.fetch())


async def test_replicas_share_tasks(open_store: Opener) -> None:
    """A task created through one replica is read and claimed through another."""
    a, b = await open_store(), await open_store()
    created = await add_task(a, 1)
    assert await b.get_result(task_id(1)) == created
    assert await claim(b) == task_id(1)
    assert await claim(a) == ""


async def test_namespaces_isolate_stores(open_store: Opener) -> None:
    """Stores in different namespaces see nothing of each other."""
    a, other = await open_store(), await open_store(namespace=new_namespace())
    await add_task(a, 1)
    assert await other.get_result(task_id(1)) is None
    assert (await other.list_tasks(TaskQuery())).items == []
    assert await claim(other) == ""


async def test_concurrent_claims_across_replicas_are_exclusive(open_store: Opener) -> None:
    """Claimers on three replicas, all at once, take every task exactly once."""
    replicas = [await open_store() for _ in range(3)]
    for n in range(1, 31):
        await add_task(replicas[n % 3], n)

    async def claimer(store: DatastoreStore, bot_id: str) -> list[str]:
        got: list[str] = []
        while task := await claim(store, bot_id):
            got.append(task)
        return got

    results = await asyncio.gather(
        *(claimer(store, f"bot{i}-{j}") for i, store in enumerate(replicas) for j in range(4))
    )
    claimed = [t for got in results for t in got]
    assert sorted(claimed) == [task_id(n) for n in range(1, 31)]
    for n in range(1, 31):
        result = await replicas[0].get_result(task_id(n))
        assert result is not None
        assert result.try_number == 1


async def test_concurrent_compare_and_set_has_one_winner(open_store: Opener) -> None:
    """Of many writes from one version on two replicas, one lands and the rest are stale."""
    a, b = await open_store(), await open_store()
    stored = await add_task(a, 1)

    async def write(store: DatastoreStore, n: int) -> str:
        try:
            await store.update_result(dataclasses.replace(stored, name=f"writer {n}"))
        except StaleWrite:
            return ""
        return f"writer {n}"

    outcomes = await asyncio.gather(*(write(a if n % 2 else b, n) for n in range(8)))
    winners = [o for o in outcomes if o]
    assert len(winners) == 1
    final = await b.get_result(task_id(1))
    assert final is not None
    assert (final.name, final.version) == (winners[0], stored.version + 1)


async def test_concurrent_request_uuid_creates_one_task(open_store: Opener) -> None:
    """Creations with one request_uuid racing on two replicas store one task, returned to all."""
    a, b = await open_store(), await open_store()
    outcomes = await asyncio.gather(
        *((a if n % 2 else b).create_task(*make_task(n, request_uuid="same")) for n in range(1, 7))
    )
    assert [created for _, created in outcomes].count(True) == 1
    assert len({result.task_id for result, _ in outcomes}) == 1
    assert len((await a.list_tasks(TaskQuery())).items) == 1


async def test_concurrent_ensure_queue_is_new_once(open_store: Opener) -> None:
    """Of replicas recording one queue at once, exactly one learns it is new."""
    a, b = await open_store(), await open_store()
    queue = Queue(key="k1", dimensions=[("pool", "a")], created_ts=NOW)
    novel = await asyncio.gather(*(s.ensure_queue(queue) for s in [a, b, a, b]))
    assert novel.count(True) == 1
    assert await b.list_queues() == [queue]


async def test_concurrent_keyed_reports_count_once(open_store: Opener) -> None:
    """A keyed report resent through two replicas at once is stored once."""
    a, b = await open_store(), await open_store()
    report = TaskReport(unit=[UnitResult(name="t", result="pass")])
    await asyncio.gather(*(s.add_report("aaa0", report, key="run:0") for s in [a, b, a, b]))
    assert (await a.get_report("aaa0")).unit == report.unit


async def test_duplicate_task_id_is_a_conflict(open_store: Opener) -> None:
    """Creating a task whose ID exists raises Conflict and leaves the first task whole."""
    store = await open_store()
    first = await add_task(store, 1, tags=("a:b",))
    with pytest.raises(Conflict, match="already exists"):
        await store.create_task(*make_task(1, priority=1, tags=("c:d",)))
    assert await store.get_result(task_id(1)) == first
    assert (await store.list_tasks(TaskQuery(tags=["c:d"]))).items == []


Interference = Callable[[], None]


@pytest.fixture
def race_after_heads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Interference], None]:
    """Arranges for `interfere` to run right after a claim reads the queue heads.

    That is the window between claim_next's read of the heads and its
    transaction, where another replica may act. `interfere` runs in the
    claim's worker thread: it calls the blocking functions directly.
    """

    def arrange(interfere: Interference) -> None:
        raced = threading.Event()

        def racing_heads(client: Any, queue: str, now: float) -> Iterator[QueueEntry]:
            heads = list(queue_heads(client, queue, now))
            if not raced.is_set():
                raced.set()
                interfere()
            yield from heads

        monkeypatch.setattr(datastore_tasks, "queue_heads", racing_heads)

    return arrange


async def test_claim_skips_candidate_taken_meanwhile(
    open_store: Opener, race_after_heads: Callable[[Interference], None]
) -> None:
    """A head that another replica claims after it was read is passed over for the next."""
    store, other = await open_store(), await open_store()
    await add_task(store, 1, priority=1)
    await add_task(store, 2, priority=2)

    def steal() -> None:
        stolen = datastore_tasks.claim_next(other.client, ["q1"], NOW, take("thief"))
        assert stolen is not None

    race_after_heads(steal)
    assert await claim(store, "bot1") == task_id(2)
    result = await store.get_result(task_id(1))
    assert result is not None
    assert result.bot_id == "thief"


async def test_claim_skips_candidate_moved_meanwhile(
    open_store: Opener, race_after_heads: Callable[[Interference], None]
) -> None:
    """A head moved to a queue the bot did not ask for, after it was read, is passed over."""
    store, other = await open_store(), await open_store()
    first = await add_task(store, 1, priority=1)
    await add_task(store, 2, priority=2)

    def move() -> None:
        datastore_tasks.update_result(other.client, dataclasses.replace(first, queue_key="q2"))

    race_after_heads(move)
    assert await claim(store, "bot1") == task_id(2)
    assert await claim(store, "bot1", keys=("q2",)) == task_id(1)


async def test_claims_run_off_the_event_loop(open_store: Opener) -> None:
    """Datastore calls, `assign` included, run in the store's threads, not the loop's."""
    store = await open_store()
    await add_task(store, 1)
    threads: list[str] = []

    def assign(r: TaskResult) -> TaskResult | None:
        threads.append(threading.current_thread().name)
        return take("bot1")(r)

    assert await store.claim_next(["q1"], NOW, assign) is not None
    assert threads != [threading.current_thread().name]
    assert all(name.startswith("datastore") for name in threads)


async def test_expired_poll_replies_are_purged(open_store: Opener) -> None:
    """Storing a reply drops replies the store's clock says have expired."""
    clock = FakeClock(NOW)
    store = await open_store(clock=clock)
    await store.put_poll_reply("b1", "old", {"cmd": "run"}, NOW + 10)
    await store.put_poll_reply("b1", "kept", {"cmd": "run"}, NOW + 100)
    clock.set(NOW + 50)
    await store.put_poll_reply("b/2", "new", {"cmd": "run"}, NOW + 150)
    assert await store.get_poll_reply("b1", "old") is None
    assert await store.get_poll_reply("b1", "kept") == {"cmd": "run"}
    assert await store.get_poll_reply("b/2", "new") == {"cmd": "run"}


async def test_output_holes_take_no_space(open_store: Opener) -> None:
    """Only chunks with written bytes are stored, each up to its last written byte."""
    store = await open_store()
    await store.write_output("r1", 5 * OUTPUT_CHUNK_SIZE + 10, b"abc")
    assert entity_names(store, datastore_client.OUTPUT_CHUNK) == ["r1/5"]
    chunk = store.client.get(datastore_client.key(store.client, "OutputChunk", "r1/5"))
    assert len(chunk["data"]) == 13


async def test_large_write_spans_several_transactions(open_store: Opener) -> None:
    """A write larger than one commit may carry is stored whole, in groups of chunks."""
    store = await open_store()
    chunks = 2 * datastore_output.CHUNKS_PER_COMMIT + 3
    data = bytes(range(256)) * (chunks * OUTPUT_CHUNK_SIZE // 256)
    await store.write_output("r1", 7, data)
    assert await store.output_size("r1") == 7 + len(data)
    assert await store.read_output("r1") == bytes(7) + data
    assert len(entity_names(store, datastore_client.OUTPUT_CHUNK)) == chunks + 1


async def test_queue_property_only_while_dispatchable(open_store: Opener) -> None:
    """Only queued results carry `queue`, so the queue index holds nothing else."""
    store = await open_store()
    queued = await add_task(store, 1)
    await add_task(store, 2, paused=True)
    await store.update_result(dataclasses.replace(queued, queue_key="q9"))
    query = datastore_client.query(
        store.client, datastore_client.TASK_RESULT, ("queue", ">", ""), keys_only=True
    )
    assert [e.key.name for e in query.fetch()] == [task_id(1)]


async def test_close_twice_is_harmless(open_store: Opener) -> None:
    """A closed store can be closed again, and refuses further calls."""
    store = await open_store()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.get_bot("b1")
