"""What is specific to the SQLite backend: settings, migrations, threads, rows.

The Store contract itself, several processes on one file included, is
tested in test_contract*.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable

import pytest

from server.clock import FakeClock
from server.errors import Unavailable
from server.model import Bot, BotQuery
from server.store import codec, sqlite_bots, sqlite_schema
from server.store.base import OUTPUT_CHUNK_SIZE, StaleWrite
from server.store.sqlite import SqliteStore
from tests.store.backends import Closer
from tests.store.records import add_task, claim, kept_reply, make_task, recorder, take, task_id

Opener = Callable[..., Awaitable[SqliteStore]]


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    """Where the tests' database file goes."""
    return tmp_path / "drover.sqlite3"


@pytest.fixture
def open_store(db_path: pathlib.Path, closing: Closer) -> Opener:
    """Opens SqliteStores on `db_path`; all are closed at teardown."""

    async def open_(clock: FakeClock | None = None) -> SqliteStore:
        return closing(await SqliteStore.open(db_path, clock=clock))

    return open_


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


async def test_migration_moves_the_newest_poll_reply_into_the_bot_row(
    db_path: pathlib.Path, open_store: Opener
) -> None:
    """Upgrading past poll_replies keeps each bot's newest answer, readable as before."""
    db = sqlite3.connect(db_path, isolation_level=None)
    steps = sqlite_schema.MIGRATIONS
    kept_in_bots = next(i for i, step in enumerate(steps) if "DROP TABLE poll_replies" in step)
    sqlite_schema.migrate(db, steps[:kept_in_bots])
    db.executemany(
        "INSERT INTO bots (bot_id, last_seen_ts, quarantined, busy, dimensions, data)"
        " VALUES (?, 0, 0, 0, '{}', ?)",
        [(bot_id, codec.dumps(Bot(bot_id=bot_id))) for bot_id in ("b1", "b2")],
    )
    db.executemany(
        "INSERT INTO poll_replies (bot_id, request_uuid, expires_ts, reply) VALUES (?, ?, ?, ?)",
        [("b1", "old", 2e9, '{"n": 1}'), ("b1", "new", 2e9 + 5, '{"n": 2}')],
    )
    db.close()
    store = await open_store(FakeClock(1e9))
    assert await kept_reply(store, "b1", "new") == {"n": 2}
    assert await kept_reply(store, "b1", "old") is None
    assert await kept_reply(store, "b2", "new") is None
    tables = store.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert "poll_replies" not in {name for (name,) in tables}


async def test_newer_database_is_refused(db_path: pathlib.Path, open_store: Opener) -> None:
    """Opening a database of a newer schema fails, saying which versions are involved."""
    newer = len(sqlite_schema.MIGRATIONS) + 1
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    with pytest.raises(sqlite_schema.SchemaTooNew, match=f"schema version {newer}"):
        await open_store()


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


async def test_touches_a_busy_file_refused_are_kept(
    open_store: Opener, db_path: pathlib.Path
) -> None:
    """Held touches whose write found the file locked stay held, and are written next time."""
    store, reader = await open_store(), await open_store()
    store.connection.execute("PRAGMA busy_timeout = 0")
    await store.put_bot(Bot(bot_id="b1", last_seen_ts=1.0))
    await store.touch_bot(Bot(bot_id="b1", last_seen_ts=2.0, state={"up": 2}))
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable):
            await store.list_bots(BotQuery())
        other.execute("ROLLBACK")
    finally:
        other.close()
    touched = Bot(bot_id="b1", last_seen_ts=2.0, state={"up": 2})
    assert await store.get_bot("b1") == touched
    await store.list_bots(BotQuery())
    assert await reader.get_bot("b1") == touched


async def test_output_holes_take_no_space(open_store: Opener) -> None:
    """Only rows of chunks with written bytes exist, each up to its last written byte."""
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


async def test_cached_records_follow_other_connections(open_store: Opener) -> None:
    """A result and a bot this store has read, changed through another connection, read anew."""
    store, other = await open_store(), await open_store()
    created = await add_task(store, 1)
    await store.put_bot(Bot(bot_id="b1"))
    assert await store.get_result(task_id(1)) == created
    assert await store.get_bot("b1") == Bot(bot_id="b1")
    changed = await other.update_result(dataclasses.replace(created, priority=7))
    await other.put_bot(Bot(bot_id="b1", quarantined="disk"))
    assert await store.get_result(task_id(1)) == changed
    assert await store.get_bot("b1") == Bot(bot_id="b1", quarantined="disk")
    await other.put_bot(Bot(bot_id="b1", quarantined="fan"))
    assert await store.read_poll("b1", "") == (None, Bot(bot_id="b1", quarantined="fan"))


async def test_a_peeked_result_may_be_stale_and_its_write_is_refused(open_store: Opener) -> None:
    """peek_result may give the cached copy another connection replaced; writing it fails."""
    store, other = await open_store(), await open_store()
    created = await add_task(store, 1)
    changed = await other.update_result(dataclasses.replace(created, priority=7))
    assert await store.peek_result(task_id(1)) == created
    with pytest.raises(StaleWrite):
        await store.update_result(dataclasses.replace(created, priority=9))
    assert await store.get_result(task_id(1)) == changed
    assert await store.peek_result(task_id(1)) == changed


async def test_a_hand_over_rewrites_bot_dimensions_another_connection_changed(
    open_store: Opener,
) -> None:
    """create_task with a dispatch does not trust a cached bot another connection replaced."""
    store, other = await open_store(), await open_store()
    linux = Bot(bot_id="b1", dimensions={"os": ["Linux"]})
    await store.put_bot(linux)
    await other.put_bot(dataclasses.replace(linux, dimensions={"os": ["Mac"]}))
    request, pending = make_task(1)
    running = take("b1")(pending)
    assert running is not None
    dispatch = recorder(bot_id="b1")(running, request)
    await store.create_task(request, running, dataclasses.replace(dispatch, bot=linux))
    found = await other.list_bots(BotQuery(dimensions=[("os", "Linux")]))
    assert [b.bot_id for b in found.items] == ["b1"]


async def test_touches_are_written_by_the_next_sweep_or_listing(open_store: Opener) -> None:
    """Held last-seen times reach the file for other connections once listed or closed."""
    store, other = await open_store(), await open_store()
    await store.put_bot(Bot(bot_id="b1", last_seen_ts=1.0))
    await store.touch_bot(Bot(bot_id="b1", last_seen_ts=2.0, state={"up": 2}))
    await store.list_bots(BotQuery())
    assert await other.get_bot("b1") == Bot(bot_id="b1", last_seen_ts=2.0, state={"up": 2})


async def test_touches_reach_the_file_in_time_without_more_polls(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held touch is written once it has waited TOUCH_BATCH_SECS, with no later call."""
    monkeypatch.setattr(sqlite_bots, "TOUCH_BATCH_SECS", 0.05)
    store, other = await open_store(), await open_store()
    await store.put_bot(Bot(bot_id="b1", last_seen_ts=1.0))
    await store.touch_bot(Bot(bot_id="b1", last_seen_ts=2.0, state={"up": 2}))
    assert await other.get_bot("b1") == Bot(bot_id="b1", last_seen_ts=1.0), "held at first"
    for _ in range(100):
        await asyncio.sleep(0.05)
        if (await other.get_bot("b1")) != Bot(bot_id="b1", last_seen_ts=1.0):
            break
    assert await other.get_bot("b1") == Bot(bot_id="b1", last_seen_ts=2.0, state={"up": 2})


async def test_checkpoints_run_beside_the_store_and_stop_with_it(open_store: Opener) -> None:
    """The WAL is checkpointed by a thread of the store's own, which close() stops."""

    def checkpointers() -> int:
        return sum(t.name == "sqlite-checkpoint" for t in threading.enumerate())

    before = checkpointers()
    store = await open_store()
    assert checkpointers() == before + 1
    await store.close()
    assert checkpointers() == before
