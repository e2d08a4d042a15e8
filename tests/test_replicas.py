"""Replicas kept in step through the Store they share (server/replicas.py).

`ReplicaSync.run_once` is tested on every backend, with several stores on
one database standing for the replicas (tests/store/backends.py); then two
whole servers on one SQLite file show a held poll and a session crossing
from one to the other. tests/e2e/test_replicas_e2e.py does the same with
server processes on the Datastore emulator.
"""

from __future__ import annotations

import asyncio
import pathlib

from server.appkeys import BOT_SERVICE
from server.auth import session_keystore
from server.auth.session import SessionKeys
from server.clock import FakeClock
from server.replicas import ReplicaSync
from server.scheduler.queues import QueueIndex
from server.scheduler.waiters import NEW_QUEUE, PollWaiters
from server.store.base import Store
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of
from tests.store.backends import ReplicaOpener
from tests.store.records import NOW, add_task

POOL = [("pool", "default")]
# Held polls last this long; the tests wait at most WAIT_SECS for an answer,
# so an answer shows the poll was woken, not ended by its hold.
HOLD_SECS = 30
WAIT_SECS = 10


async def replica_sync(
    store: Store, clock: FakeClock
) -> tuple[ReplicaSync, PollWaiters, SessionKeys]:
    """A replica's check over `store`, wired as the app wires it; its held polls and keys."""
    waiters = PollWaiters()
    queues = QueueIndex(store, on_new=lambda _: waiters.notify(NEW_QUEUE))
    await queues.refresh()
    keys = await session_keystore.load_or_create(store, clock)
    return ReplicaSync(store, clock, queues, waiters, keys), waiters, keys


async def test_queue_created_elsewhere_wakes_held_polls(
    store: Store, open_replica: ReplicaOpener, store_clock: FakeClock
) -> None:
    """A queue another replica recorded enters this one's index and wakes its held polls."""
    sync, waiters, _ = await replica_sync(store, store_clock)
    other = QueueIndex(await open_replica())
    key = await other.register(POOL, NOW)
    with waiters.waiting([NEW_QUEUE]) as event:
        await sync.run_once()
        assert event.is_set()
    queues = QueueIndex(store)
    await queues.refresh()
    assert queues.get(key) is not None


async def test_held_polls_of_queues_with_work_are_woken(
    store: Store, open_replica: ReplicaOpener, store_clock: FakeClock
) -> None:
    """Only the polls waiting on a queue where another replica queued a task wake up."""
    sync, waiters, _ = await replica_sync(store, store_clock)
    await add_task(await open_replica(), 1, queue_key="q1")
    with waiters.waiting(["q1"]) as woken, waiters.waiting(["q2"]) as idle:
        assert await sync.run_once() == 1
        assert woken.is_set()
        assert not idle.is_set()
    assert await sync.run_once() == 0


async def test_rotated_session_key_is_picked_up(
    store: Store, open_replica: ReplicaOpener, store_clock: FakeClock
) -> None:
    """A session key another replica added signs here after the next check."""
    sync, _, keys = await replica_sync(store, store_clock)
    key = await session_keystore.rotate(await open_replica(), store_clock)
    assert keys.signing.key_id != key.key_id
    await sync.run_once()
    assert keys.signing.key_id == key.key_id


async def two_replicas(
    make_server: ServerFactory, config_dir: pathlib.Path, hold_secs: int = HOLD_SECS
) -> tuple[ScriptedBot, ScriptedBot]:
    """Two servers on one SQLite file re-checking it often; a scripted bot bound to each."""
    (config_dir / "settings.cfg").write_text(
        f'long_poll_secs: {hold_secs}\nanonymous_role: "admin"\n'
    )
    a = await make_server(recheck_secs=0.05)
    b = await make_server(recheck_secs=0.05)
    return ScriptedBot(a, "bot-a"), ScriptedBot(b, "bot-b")


async def held(bot: ScriptedBot) -> asyncio.Task[dict[str, object]]:
    """Starts a poll and waits until its server holds it."""
    poll = asyncio.create_task(bot.poll())
    waiters = app_of(bot.client)[BOT_SERVICE].waiters
    for _ in range(500):
        if waiters.held or poll.done():
            break
        await asyncio.sleep(0.01)
    assert waiters.held, "the poll is held"
    return poll


async def answer_to_task_from(bot: ScriptedBot, creator: ScriptedBot) -> dict[str, object]:
    """Holds a poll of `bot`, creates a task through `creator`'s server; returns the answer."""
    await bot.handshake()
    poll = await held(bot)
    created = await creator.client.post("/api/v1/tasks", json=task_body())
    assert created.status == 200, await created.text()
    return await asyncio.wait_for(poll, WAIT_SECS)


async def test_long_poll_on_one_replica_gets_a_task_created_on_another(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A poll held on replica A answers `run` for a task created on B, in a new or a known queue."""
    bot, other = await two_replicas(make_server, config_dir)
    # The task's queue is new to A: it learns of it, then of the task.
    assert (await answer_to_task_from(bot, other))["cmd"] == "run"
    # Now A knows the queue, and only the Store says it has work.
    second = ScriptedBot(bot.client, "bot-a2")
    assert (await answer_to_task_from(second, other))["cmd"] == "run"


async def test_session_from_one_replica_works_on_another(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A bot that handshook with replica A polls replica B with A's session and is served."""
    bot, other = await two_replicas(make_server, config_dir, hold_secs=0)
    await bot.handshake()
    bot.client = other.client
    answer = await bot.poll()
    assert answer["cmd"] == "sleep", answer
    assert answer["session"] != ""


async def replicas_without_recheck(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> tuple[ScriptedBot, ScriptedBot, str]:
    """Two servers on one file, neither re-checking it; a task created through the first.

    Both know the task's queue (the second starts after it was made), and the
    first keeps the task in its record cache as it created it.
    """
    (config_dir / "settings.cfg").write_text('long_poll_secs: 0\nanonymous_role: "admin"\n')
    a = await make_server()
    created = await a.post("/api/v1/tasks", json=task_body(wait=True))
    assert created.status == 200, await created.text()
    b = await make_server()
    return ScriptedBot(a, "bot1"), ScriptedBot(b, "bot1"), (await created.json())["task_id"]


async def test_a_run_dispatched_by_one_replica_reports_to_another(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """Replica A still holds the task as queued when B's bot reports to it: A reads it again."""
    on_a, on_b, task_id = await replicas_without_recheck(make_server, config_dir)
    await on_b.handshake()
    run_id = (await on_b.poll())["manifest"]["task_id"]
    on_b.client = on_a.client
    assert await on_b.update(run_id, b"out\n", 0) == {
        "ok": True,
        "must_stop": False,
        "paused": False,
    }
    assert (await on_b.update(run_id, exit_code=0, duration=1.0))["ok"] is True
    result = await (await on_a.client.get(f"/api/v1/tasks/{task_id}")).json()
    assert result["state"] == "COMPLETED"
    assert await (await on_a.client.get(f"/api/v1/tasks/{task_id}/log")).read() == b"out\n"


async def test_a_cancel_on_one_replica_reaches_updates_to_another(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """Replica A holds the run as running, not killing, when B cancels it: A's answer says stop."""
    bot, on_b, task_id = await replicas_without_recheck(make_server, config_dir)
    await bot.handshake()
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"mine\n", 0)
    canceled = await on_b.client.post(
        f"/api/v1/tasks/{task_id}:cancel", json={"kill_running": True}
    )
    assert await canceled.json() == {"canceled": True, "was_running": True}
    answer = await bot.update(run_id, b"more\n", 5)
    assert answer["must_stop"] is True
    await bot.update(run_id, exit_code=-15, duration=2.0)
    result = await (await on_b.client.get(f"/api/v1/tasks/{task_id}")).json()
    assert result["state"] == "KILLED"


async def test_output_to_a_run_another_replica_ended_is_refused(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """Replica A holds the run as running after it ended through B: late output is not kept."""
    on_a, on_b, task_id = await replicas_without_recheck(make_server, config_dir)
    await on_a.handshake()
    run_id = (await on_a.poll())["manifest"]["task_id"]
    await on_a.update(run_id, b"out\n", 0)
    on_b.session = on_a.session
    assert (await on_b.update(run_id, exit_code=0, duration=1.0))["ok"] is True
    answer = await on_a.update(run_id, b"late\n", 4)
    assert answer["must_stop"] is True, answer
    assert await (await on_b.client.get(f"/api/v1/tasks/{task_id}/log")).read() == b"out\n"
