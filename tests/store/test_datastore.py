"""What is specific to the Datastore backend: namespaces, threads, entities and indexes.

Every test runs against the emulator (tests/store/datastore_emulator.py).
The Store contract itself, several replicas on one database included, is
tested in test_contract*.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from server.clock import FakeClock
from server.model import TaskQuery, TaskResult, TaskState
from server.store import datastore_bots, datastore_client, datastore_output, datastore_tasks
from server.store.base import OUTPUT_CHUNK_SIZE, PollReply
from server.store.datastore import REPLY_PURGE_SECS, DatastoreStore
from tests.store.backends import Closer
from tests.store.datastore_emulator import Emulator, new_namespace
from tests.store.records import NOW, add_task, claim, kept_reply, recorder, take, task_id

pytestmark = pytest.mark.datastore

# Opens a store on the test's namespace (a replica), or on another one.
Opener = Callable[..., Awaitable[DatastoreStore]]


@pytest.fixture
def open_store(datastore_emulator: Emulator, closing: Closer) -> Opener:
    """Opens DatastoreStores on one fresh namespace; all are closed at teardown."""
    shared = new_namespace()

    async def open_(clock: FakeClock | None = None, namespace: str = shared) -> DatastoreStore:
        return closing(await datastore_emulator.open_store(namespace, clock=clock))

    return open_


def entity_names(store: DatastoreStore, kind: str) -> list[str]:
    """The key names of every entity of `kind` in the store's namespace."""
    query = datastore_client.query(store.client, kind, keys_only=True)
    return sorted(str(e.key.name) for e in query.fetch())


async def test_namespaces_isolate_stores(open_store: Opener) -> None:
    """Stores in different namespaces see nothing of each other."""
    a, other = await open_store(), await open_store(namespace=new_namespace())
    await add_task(a, 1)
    assert await other.get_result(task_id(1)) is None
    assert (await other.list_tasks(TaskQuery())).items == []
    assert await claim(other) == ""


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


async def test_output_holes_take_no_space(open_store: Opener) -> None:
    """Only OutputChunk entities with written bytes exist, each up to its last written byte."""
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


async def test_claim_passes_over_a_candidate_another_claim_is_trying(open_store: Opener) -> None:
    """A claim leaves the head that another claim of its replica is trying, and takes the next."""
    store = await open_store()
    await add_task(store, 1, priority=1)
    await add_task(store, 2, priority=2)
    in_flight = datastore_tasks.ClaimsInFlight()
    assert in_flight.take(task_id(1))

    async def claim_with_other_in_flight() -> str:
        got = await asyncio.to_thread(
            datastore_tasks.claim_next, store.client, ["q1"], NOW, take("bot1"), in_flight
        )
        return got.task_id if got else ""

    assert await claim_with_other_in_flight() == task_id(2)
    # The head alone is left, still being tried: it is not taken from under that claim.
    assert await claim_with_other_in_flight() == ""
    in_flight.release(task_id(1))
    assert await claim_with_other_in_flight() == task_id(1)


async def test_a_bot_keeps_one_poll_reply(open_store: Opener) -> None:
    """Each dispatch replaces the bot's PollReply: one entity per bot, named by its ID."""
    store = await open_store()
    for n in (1, 2):
        await add_task(store, n)
        uuid = f"u{n}"
        await store.dispatch_next(["q1"], NOW, take("bot1"), recorder(uuid, bot_id="bot1"))
    assert entity_names(store, datastore_client.POLL_REPLY) == ["bot1"]
    assert await kept_reply(store, "bot1", "u2") is not None
    assert await kept_reply(store, "bot1", "u1") is None


async def test_the_sweepers_call_purges_expired_replies_once_a_while(open_store: Opener) -> None:
    """list_due deletes expired PollReply entities, of the old "<bot>/<uuid>" names too,
    at most every REPLY_PURGE_SECS of the store's clock."""
    clock = FakeClock(NOW)
    store = await open_store(clock)
    old = PollReply("old-bot", "u0", {"cmd": "run"}, NOW + 10)
    legacy = datastore_client.make_entity(
        store.client, datastore_client.POLL_REPLY, "old-bot/u0", {"expires_ts": NOW + 10}, {}
    )
    store.client.put(legacy)
    store.client.put(datastore_bots.reply_entity(store.client, old))
    await add_task(store, 1)
    await store.dispatch_next(
        ["q1"], NOW, take("b2"), recorder("u1", bot_id="b2", expires_ts=NOW + 500)
    )
    await store.list_due(NOW, 10)
    assert len(entity_names(store, datastore_client.POLL_REPLY)) == 3, "nothing expired yet"
    clock.set(NOW + 30)
    await store.list_due(NOW + 30, 10)
    assert len(entity_names(store, datastore_client.POLL_REPLY)) == 3, "purged a moment ago"
    clock.set(NOW + REPLY_PURGE_SECS + 1)
    await store.list_due(NOW + REPLY_PURGE_SECS + 1, 10)
    assert entity_names(store, datastore_client.POLL_REPLY) == ["b2"]


async def test_a_purge_keeps_an_answer_replaced_since_its_query(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply the purge's query found expired, then replaced by a dispatch before the
    delete, is kept: the delete reads it again in its transaction."""
    store = await open_store()
    stale = PollReply("bot1", "u0", {"cmd": "run", "n": 0}, NOW - 10)
    fresh = PollReply("bot1", "u1", {"cmd": "run", "n": 1}, NOW + 500)
    store.client.put(datastore_bots.reply_entity(store.client, stale))
    real_query = datastore_client.query

    def racing_query(*args: Any, **kwargs: Any) -> Any:
        found = real_query(*args, **kwargs)

        class Racing:
            def fetch(self, **fetch_args: Any) -> list[Any]:
                keys = list(found.fetch(**fetch_args))
                store.client.put(datastore_bots.reply_entity(store.client, fresh))
                return keys

        return Racing()

    monkeypatch.setattr(datastore_bots, "query", racing_query)
    datastore_bots.purge_replies(store.client, NOW)
    assert entity_names(store, datastore_client.POLL_REPLY) == ["bot1"]
    assert datastore_bots.read_poll(store.client, "bot1", "u1", NOW)[0] == fresh.reply


def unindex_failure(store: DatastoreStore, n: int) -> None:
    """Rewrites task `n`'s result entity as a store before the `failed` property wrote it."""
    result_key = datastore_client.key(store.client, datastore_client.TASK_RESULT, task_id(n))
    entity = store.client.get(result_key)
    assert entity.pop("failed") is True
    store.client.put(entity)


async def test_failures_are_indexed_from_the_first_check_on(open_store: Opener) -> None:
    """A failure since the first check is found by its index; an older one by reading results."""
    first = await open_store(clock=FakeClock(NOW))
    await first.check()
    done = {"state": TaskState.COMPLETED, "queue_key": "", "failure": True}
    await add_task(first, 1, created_ts=NOW - 10, tags=("old:1",), **done)
    await add_task(first, 2, created_ts=NOW + 10, tags=("new:1",), **done)
    await add_task(first, 3, created_ts=NOW + 500, tags=("new:2",), **done)
    await add_task(first, 4, created_ts=NOW + 20, tags=("new:3",), state=TaskState.RUNNING)
    names = [
        e.key.name
        for e in datastore_client.query(
            first.client, datastore_client.TASK_RESULT, ("failed", "=", True), keys_only=True
        ).fetch()
    ]
    assert sorted(names) == [task_id(1), task_id(2), task_id(3)]
    for n in (1, 3):
        unindex_failure(first, n)
    # A later store keeps the first check's moment: results from before it
    # are read, results since are answered by the index alone.
    later = await open_store(clock=FakeClock(NOW + 1000))
    await later.check()
    for store in (first, later):
        assert await store.any_failed(TaskQuery(tags=["old:1"]))
        assert await store.any_failed(TaskQuery(tags=["new:1"]))
        assert not await store.any_failed(TaskQuery(tags=["new:2"]))
        assert not await store.any_failed(TaskQuery(tags=["new:3"]))
        assert not await store.any_failed(TaskQuery(created_after=NOW + 100))
        assert await store.any_failed(TaskQuery(created_before=NOW))
