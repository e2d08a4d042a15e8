"""A task created while a poll that can run it is held is handed to that poll.

The creation stores the task already reserved for the held poll's bot, with
the poll's dispatch, in one transaction; the poll answers `run` without a
claim of its own (server/scheduler/waiters.py, Store.create_task).
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from server.appkeys import BOT_SERVICE, STORE
from server.errors import Unavailable
from server.model import TaskState
from server.store.base import Store
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of, until_held

ANONYMOUS = 'anonymous_role: "admin"\n'


class CountingClaims:
    """Counts the claims (dispatch_next) the app's store is asked for."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        claim = store.dispatch_next

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await claim(*args, **kwargs)

        monkeypatch.setattr(store, "dispatch_next", counted)


async def holding_server(
    make_server: ServerFactory, config_dir: pathlib.Path, long_poll_secs: int
) -> Any:
    """A server that holds idle polls for `long_poll_secs`; callers need no token."""
    (config_dir / "settings.cfg").write_text(f"long_poll_secs: {long_poll_secs}\n{ANONYMOUS}")
    return await make_server()


def before_create(
    store: Store, monkeypatch: pytest.MonkeyPatch, first: Callable[[], Awaitable[None]]
) -> None:
    """Makes the store's create_task await `first()` before it stores anything."""
    create = store.create_task

    async def preceded(*args: Any) -> Any:
        await first()
        return await create(*args)

    monkeypatch.setattr(store, "create_task", preceded)


async def held_bot(client: Any, bot_id: str = "bot1") -> tuple[ScriptedBot, asyncio.Task[Any]]:
    """A bot whose poll is held on the queue of task_body(), which exists already.

    (A poll is registered under the queues that exist as it starts to wait;
    the first task of a new queue wakes every held poll to claim.)
    """
    bot = ScriptedBot(client, bot_id)
    await bot.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    first = await bot.poll()
    assert first["cmd"] == "run"
    await bot.update(first["manifest"]["task_id"], exit_code=0, duration=0.1)
    poll = asyncio.create_task(bot.poll(request_uuid=f"{bot_id}-poll"))
    await until_held(client)
    return bot, poll


async def test_a_task_for_a_held_poll_is_handed_over_without_a_claim(
    make_server: ServerFactory, config_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll gets `run`; the task, the bot, its event and the replay are stored."""
    client = await holding_server(make_server, config_dir, 30)
    bot, poll = await held_bot(client)
    store = app_of(client)[STORE]
    claims = CountingClaims(store, monkeypatch)
    created = await (await client.post("/api/v1/tasks", json=task_body())).json()
    answer = await asyncio.wait_for(poll, 10)
    assert answer["cmd"] == "run"
    assert claims.calls == 0
    task_id = created["task_id"]
    run_id = answer["manifest"]["task_id"]
    result = await store.get_result(task_id)
    assert result is not None
    assert (result.state, result.bot_id, result.run_id) == (TaskState.RUNNING, "bot1", run_id)
    assert created["task_result"]["state"] == "RUNNING", "the creator sees it running"
    stored_bot = await store.get_bot("bot1")
    assert stored_bot is not None
    assert stored_bot.task_id == run_id
    events = (await store.list_bot_events("bot1", 10)).items
    assert events[0].event_type == "request_task"
    assert events[0].task_id == run_id
    assert await bot.poll(request_uuid="bot1-poll") == answer, "a retried poll is replayed"
    await bot.update(run_id, exit_code=0, duration=0.1)
    done = await store.get_result(task_id)
    assert done is not None
    assert done.state == TaskState.COMPLETED


async def test_a_failed_creation_releases_the_held_poll(
    make_server: ServerFactory, config_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creation that fails answers 503; the poll waits on and takes the next task."""
    client = await holding_server(make_server, config_dir, 30)
    _, poll = await held_bot(client)
    failures = [Unavailable("the database is busy, try again")]

    async def fail_once() -> None:
        if failures:
            raise failures.pop()

    before_create(app_of(client)[STORE], monkeypatch, fail_once)
    failed = await client.post("/api/v1/tasks", json=task_body())
    assert failed.status == 503
    await asyncio.sleep(0.05)
    assert not poll.done()
    created = await (await client.post("/api/v1/tasks", json=task_body())).json()
    answer = await asyncio.wait_for(poll, 10)
    assert answer["cmd"] == "run"
    assert answer["manifest"]["task_id"] == created["task_result"]["run_id"]


async def test_a_hold_ending_while_its_task_is_stored_answers_with_the_task(
    make_server: ServerFactory, config_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll promised a task waits for its creation to settle, past the hold's end."""
    client = await holding_server(make_server, config_dir, 1)
    _, poll = await held_bot(client)
    before_create(app_of(client)[STORE], monkeypatch, lambda: asyncio.sleep(1.5))
    created = await (await client.post("/api/v1/tasks", json=task_body())).json()
    answer = await asyncio.wait_for(poll, 10)
    assert answer["cmd"] == "run"
    assert answer["manifest"]["task_id"] == created["task_result"]["run_id"]


async def test_two_tasks_go_to_two_held_polls(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """Each held poll is promised one task: two creations at once reach two bots."""
    client = await holding_server(make_server, config_dir, 30)
    _, first = await held_bot(client, "bot1")
    bot2 = ScriptedBot(client, "bot2")
    await bot2.handshake()
    polls = [first, asyncio.create_task(bot2.poll())]
    await until_held(client, 2)
    replies = await asyncio.gather(
        *(client.post("/api/v1/tasks", json=task_body()) for _ in range(3))
    )
    ids = {(await r.json())["task_id"] for r in replies}
    answers = await asyncio.wait_for(asyncio.gather(*polls), 10)
    run_ids = {a["manifest"]["task_id"] for a in answers}
    assert len(run_ids) == 2
    assert {r[:-1] + "0" for r in run_ids} <= ids
    waiting = [t for t in ids if t[:-1] + "1" not in run_ids]
    assert len(waiting) == 1
    result = await app_of(client)[STORE].get_result(waiting[0])
    assert result is not None
    assert result.state == TaskState.PENDING, "the third waits in its queue"
    assert app_of(client)[BOT_SERVICE].waiters.held == 0
