"""What is specific to the SQLite backend: settings, migrations, sharing one file.

The Store contract itself is tested in test_contract.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from server.clock import FakeClock
from server.errors import Conflict, Unavailable
from server.model import TaskQuery
from server.store import sqlite as sqlite_module
from server.store import sqlite_schema
from server.store.base import OUTPUT_CHUNK_SIZE, StaleWrite
from server.store.sqlite import SqliteStore
from server.store.sqlite_results import QueueEntry, queue_heads
from tests.store.records import NOW, add_task, claim, make_task, task_id

Opener = Callable[..., Awaitable[SqliteStore]]


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    """Where the tests' database file goes."""
    return tmp_path / "drover.sqlite3"


@pytest.fixture
async def open_store(db_path: pathlib.Path) -> AsyncIterator[Opener]:
    """Opens SqliteStores on `db_path`; all are closed at teardown."""
    opened: list[SqliteStore] = []

    async def open_(clock: FakeClock | None = None) -> SqliteStore:
        store = await SqliteStore.open(db_path, clock=clock)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def pragma(store: SqliteStore, name: str) -> object:
    """Reads one PRAGMA of the store's connection."""
    return store.connection.execute(f"PRAGMA {name}").fetchone()[0]


async def test_connection_settings(open_store: Opener) -> None:
    """The database runs in WAL mode with synchronous=NORMAL and a busy timeout."""
    store = await open_store()
    assert pragma(store, "journal_mode") == "wal"
    assert pragma(store, "synchronous") == 1
    assert pragma(store, "busy_timeout") == sqlite_schema.BUSY_TIMEOUT_MS


async def test_new_database_gets_latest_schema(open_store: Opener) -> None:
    """A new file is created at the latest schema version."""
    store = await open_store()
    assert pragma(store, "user_version") == len(sqlite_schema.MIGRATIONS)


async def test_reopen_keeps_data(open_store: Opener) -> None:
    """Data written before a close is there after reopening."""
    first = await open_store()
    await add_task(first, 1)
    await first.close()
    second = await open_store()
    assert await second.get_result(task_id(1)) is not None


async def test_migrate_applies_only_missing_steps(db_path: pathlib.Path) -> None:
    """An older database gets just the steps it lacks, and keeps its data."""
    steps = [("CREATE TABLE t1 (x)", "INSERT INTO t1 VALUES (1)"), ("CREATE TABLE t2 (y)",)]
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        sqlite_schema.migrate(db, steps[:1])
        assert sqlite_schema.user_version(db) == 1
        # Re-running step 1 would fail: CREATE TABLE t1 exists.
        sqlite_schema.migrate(db, steps)
        assert sqlite_schema.user_version(db) == 2
        assert db.execute("SELECT x FROM t1").fetchall() == [(1,)]
        assert db.execute("SELECT count(*) FROM t2").fetchone() == (0,)
    finally:
        db.close()


async def test_failed_migration_changes_nothing(db_path: pathlib.Path) -> None:
    """A step that fails rolls back every step of the run, version included."""
    steps = [("CREATE TABLE t1 (x)",), ("CREATE TABLE t1 (x)",)]
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            sqlite_schema.migrate(db, steps)
        assert sqlite_schema.user_version(db) == 0
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
    finally:
        db.close()


async def test_newer_database_is_refused(db_path: pathlib.Path, open_store: Opener) -> None:
    """Opening a database of a newer schema fails, saying which versions are involved."""
    newer = len(sqlite_schema.MIGRATIONS) + 1
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    with pytest.raises(sqlite_schema.SchemaTooNew, match=f"schema version {newer}"):
        await open_store()


async def test_two_instances_interleaved_claims(open_store: Opener) -> None:
    """Two stores on one file never hand out the same task."""
    a, b = await open_store(), await open_store()
    for n in range(1, 7):
        await add_task(a if n % 2 else b, n)
    got = [await claim(s, f"bot{i}") for i, s in enumerate([a, b, b, a, a, b, a, b])]
    claimed = [t for t in got if t]
    assert sorted(claimed) == [task_id(n) for n in range(1, 7)]
    assert got[-2:] == ["", ""]


async def test_two_instances_stale_write(open_store: Opener) -> None:
    """A compare-and-set from one store fails once the other store wrote first."""
    a, b = await open_store(), await open_store()
    stored = await add_task(a, 1)
    await b.update_result(stored)
    with pytest.raises(StaleWrite):
        await a.update_result(stored)


async def test_concurrent_claims_across_threads(db_path: pathlib.Path, open_store: Opener) -> None:
    """Stores in four threads claiming at once each get distinct tasks, and all of them."""
    seed = await open_store()
    for n in range(1, 201):
        await add_task(seed, n)

    def claimer(bot_id: str) -> list[str]:
        async def run() -> list[str]:
            store = await SqliteStore.open(db_path)
            try:
                got: list[str] = []
                while task := await claim(store, bot_id):
                    got.append(task)
                return got
            finally:
                await store.close()

        return asyncio.run(run())

    results = await asyncio.gather(*(asyncio.to_thread(claimer, f"bot{i}") for i in range(4)))
    claimed = [t for got in results for t in got]
    assert sorted(claimed) == [task_id(n) for n in range(1, 201)]


async def test_claim_cost_ignores_other_queues(open_store: Opener) -> None:
    """A claim runs the same number of SQLite steps however much other work is pending."""
    store = await open_store()

    async def steps_to_claim(n: int) -> int:
        steps = 0

        def tick() -> int:
            nonlocal steps
            steps += 1
            return 0

        await add_task(store, n, queue_key="mine")
        store.connection.set_progress_handler(tick, 1)
        try:
            assert await claim(store, keys=("mine",)) == task_id(n)
        finally:
            store.connection.set_progress_handler(None, 1)
        return steps

    for n in range(10, 20):
        await add_task(store, n, queue_key="other")
    few = await steps_to_claim(1)
    for n in range(1000, 2000):
        await add_task(store, n, queue_key="other", priority=1)
    many = await steps_to_claim(2)
    # Scanning the other queue would cost thousands of steps; an index seek
    # costs the same number of steps at any table size.
    assert many <= few * 1.2


async def test_busy_database_is_unavailable(open_store: Opener, db_path: pathlib.Path) -> None:
    """A write that cannot get the write lock in time raises Unavailable."""
    store = await open_store()
    store.connection.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable):
            await store.write_output("r1", 0, b"x")
        other.execute("ROLLBACK")
    finally:
        other.close()
    await store.write_output("r1", 0, b"x")
    assert await store.read_output("r1") == b"x"


async def test_expired_poll_replies_are_purged(open_store: Opener) -> None:
    """Storing a reply drops replies the store's clock says have expired."""
    clock = FakeClock(NOW)
    store = await open_store(clock=clock)
    await store.put_poll_reply("b1", "old", {"cmd": "run"}, NOW + 10)
    await store.put_poll_reply("b1", "kept", {"cmd": "run"}, NOW + 100)
    clock.set(NOW + 50)
    await store.put_poll_reply("b2", "new", {"cmd": "run"}, NOW + 150)
    assert await store.get_poll_reply("b1", "old") is None
    assert await store.get_poll_reply("b1", "kept") == {"cmd": "run"}


async def test_output_holes_take_no_space(open_store: Opener) -> None:
    """Only chunks with written bytes are stored, each up to its last written byte."""
    store = await open_store()
    await store.write_output("r1", 5 * OUTPUT_CHUNK_SIZE + 10, b"abc")
    rows = store.connection.execute("SELECT chunk_index, length(data) FROM output_chunks")
    assert rows.fetchall() == [(5, 13)]


async def test_output_rewrite_writes_nothing(open_store: Opener) -> None:
    """Rewriting bytes already stored changes no row at all."""
    store = await open_store()
    await store.write_output("r1", 0, b"abcdef")
    before = store.connection.total_changes
    await store.write_output("r1", 1, b"bcd")
    assert store.connection.total_changes == before
    await store.write_output("r1", 1, b"BCD")
    assert store.connection.total_changes > before


Interference = Callable[[SqliteStore], Awaitable[None]]


@pytest.fixture
def race_after_heads(
    db_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Interference], None]:
    """Arranges for `interfere` to run on another connection right after a claim reads heads.

    That is the window between claim_next's read of the queue heads and its
    write transaction, where another server process may act.
    """

    def arrange(interfere: Interference) -> None:
        raced = threading.Event()

        async def elsewhere() -> None:
            other = await SqliteStore.open(db_path)
            try:
                await interfere(other)
            finally:
                await other.close()

        def racing_heads(db: sqlite3.Connection, key: str, now: float) -> Iterator[QueueEntry]:
            heads = list(queue_heads(db, key, now))
            if not raced.is_set():
                raced.set()
                # A thread, as a store's connection is bound to the thread that
                # opened it; a claim made there passes here with `raced` set.
                thread = threading.Thread(target=lambda: asyncio.run(elsewhere()))
                thread.start()
                thread.join()
            yield from heads

        monkeypatch.setattr(sqlite_module, "queue_heads", racing_heads)

    return arrange


async def test_claim_skips_candidate_taken_meanwhile(
    open_store: Opener, race_after_heads: Callable[[Interference], None]
) -> None:
    """A head that another connection claims after it was read is passed over for the next."""
    store = await open_store()
    await add_task(store, 1, priority=1)
    await add_task(store, 2, priority=2)

    async def steal(other: SqliteStore) -> None:
        assert await claim(other, "thief") == task_id(1)

    race_after_heads(steal)
    assert await claim(store, "bot1") == task_id(2)
    result = await store.get_result(task_id(1))
    assert result is not None
    assert result.bot_id == "thief"


async def test_claim_skips_candidate_moved_meanwhile(
    open_store: Opener, race_after_heads: Callable[[Interference], None]
) -> None:
    """A head moved to a queue the bot did not ask for, after it was read, is passed over."""
    store = await open_store()
    first = await add_task(store, 1, priority=1)
    await add_task(store, 2, priority=2)

    async def move(other: SqliteStore) -> None:
        await other.update_result(dataclasses.replace(first, queue_key="q2"))

    race_after_heads(move)
    assert await claim(store, "bot1") == task_id(2)
    assert await claim(store, "bot1", keys=("q2",)) == task_id(1)


async def test_duplicate_task_id_is_a_conflict(open_store: Opener) -> None:
    """Creating a task whose ID exists raises Conflict and leaves the first task whole."""
    store = await open_store()
    first = await add_task(store, 1, tags=("a:b",))
    with pytest.raises(Conflict, match="already exists"):
        await store.create_task(*make_task(1, priority=1, tags=("c:d",)))
    assert await store.get_result(task_id(1)) == first
    page = await store.list_tasks(TaskQuery(tags=["c:d"]))
    assert page.items == []


async def test_close_twice_is_harmless(open_store: Opener) -> None:
    """A closed store can be closed again, and refuses further calls."""
    store = await open_store()
    await store.close()
    await store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        await store.get_bot("b1")
