"""A poll's work does not grow with pending work the bot cannot run (counted, not timed)."""

from __future__ import annotations

import dataclasses

from server.appkeys import BOT_SERVICE, STORE, TASK_SERVICE
from server.dimensions import queue_key
from server.model import TaskState
from server.store.sqlite import SqliteStore
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of

OTHER_TASKS = 100_000
OTHER_QUEUES = 100


async def test_poll_work_is_flat_from_0_to_100k_unrunnable_tasks(
    make_server: ServerFactory,
) -> None:
    """Queues inspected and SQLite VM steps of a poll are the same with 0 or 100,000
    pending tasks in queues the bot does not match."""
    client = await make_server()
    app = app_of(client)
    store = app[STORE]
    assert isinstance(store, SqliteStore)
    queues = app[BOT_SERVICE].context.queues
    bot = ScriptedBot(client)
    await bot.handshake()
    await bot.poll()
    mine = await client.post("/api/v1/tasks", json=task_body())
    assert mine.status == 200

    async def poll_cost() -> tuple[int, int, str]:
        steps = 0

        def tick() -> int:
            nonlocal steps
            steps += 1
            return 0

        checked = queues.queues_checked
        store.connection.set_progress_handler(tick, 1)
        try:
            answer = await bot.poll(request_uuid=None)
        finally:
            store.connection.set_progress_handler(None, 1)
        return queues.queues_checked - checked, steps, answer["cmd"]

    # Baseline: the bot's own queue only; the task goes back by cancel after each poll.
    template = await app[TASK_SERVICE].get_result((await mine.json())["task_id"])
    request = await app[TASK_SERVICE].get_request(template.task_id)
    await bot.poll()  # warm the bot's queue cache
    run = await client.post(f"/api/v1/tasks/{template.task_id}:cancel", json={"kill_running": True})
    assert run.status == 200

    async def fresh_task() -> None:
        assert (await client.post("/api/v1/tasks", json=task_body())).status == 200

    await fresh_task()
    empty = await poll_cost()

    for q in range(OTHER_QUEUES):
        dims = [("os", f"other-{q}"), ("pool", "default")]
        key = await queues.register(dims, 0.0)
        assert key == queue_key(dims)
        for i in range(OTHER_TASKS // OTHER_QUEUES):
            task_id = f"{0x7000000000000 + q * 10_000 + i:x}0"
            await store.create_task(
                dataclasses.replace(request, task_id=task_id, request_uuid=""),
                dataclasses.replace(
                    template,
                    task_id=task_id,
                    state=TaskState.PENDING,
                    queue_key=key,
                    expiration_ts=template.expiration_ts + 10**6,
                    version=0,
                ),
            )
    await fresh_task()
    await bot.poll()  # absorbs the new queues once: each is checked against the bot
    await fresh_task()
    full = await poll_cost()
    assert empty[2] == full[2] == "run"
    assert empty[0] == full[0] == 0
    # A scan of the other queues would cost hundreds of thousands of steps; the
    # few steps of slack absorb this bot's own growing history (its events).
    assert abs(full[1] - empty[1]) <= 8, (empty, full)
