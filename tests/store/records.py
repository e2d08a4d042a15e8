"""Test records for the Store tests: tasks built in one line, claims in one call."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from server.model import (
    Bot,
    BotEvent,
    TaskProperties,
    TaskRequest,
    TaskResult,
    TaskSlice,
    TaskState,
)
from server.store.base import Dispatch, PollReply, Store

NOW = 1_700_000_000.0
# An expiry no store's clock has reached: such poll replies must be kept.
FAR = NOW + 1e9


def task_id(n: int) -> str:
    """A summary task ID (ends in 0, as in Swarming)."""
    return f"{n:015x}0"


def make_task(
    n: int,
    *,
    queue_key: str = "q1",
    priority: int = 100,
    created_ts: float = NOW,
    expiration_ts: float = NOW + 600,
    request_uuid: str = "",
    tags: tuple[str, ...] = (),
    **changes: Any,
) -> tuple[TaskRequest, TaskResult]:
    """A pending task `n` and its result; `changes` are applied to the result."""
    props = TaskProperties(command=["echo", str(n)], dimensions=[("pool", "default")])
    request = TaskRequest(
        task_id=task_id(n),
        created_ts=created_ts,
        name=f"task {n}",
        priority=priority,
        slices=[TaskSlice(properties=props, expiration_secs=600)],
        tags=list(tags),
        request_uuid=request_uuid,
    )
    result = TaskResult(
        task_id=task_id(n),
        state=TaskState.PENDING,
        created_ts=created_ts,
        modified_ts=created_ts,
        priority=priority,
        name=request.name,
        tags=list(tags),
        queue_key=queue_key,
        expiration_ts=expiration_ts,
    )
    return request, dataclasses.replace(result, **changes)


async def add_task(store: Store, n: int, **kwargs: Any) -> TaskResult:
    """Creates task `n` (see make_task) and returns its stored result."""
    result, created = await store.create_task(*make_task(n, **kwargs))
    assert created
    return result


def take(bot_id: str) -> Callable[[TaskResult], TaskResult | None]:
    """An `assign` for claim_next that reserves the task for `bot_id`."""

    def assign(r: TaskResult) -> TaskResult:
        return dataclasses.replace(
            r, state=TaskState.RUNNING, bot_id=bot_id, try_number=r.try_number + 1
        )

    return assign


async def claim(store: Store, bot_id: str = "bot1", keys: tuple[str, ...] = ("q1",)) -> str:
    """Claims the next task of `keys` for `bot_id`; returns its ID or ''."""
    got = await store.claim_next(list(keys), NOW, take(bot_id))
    return got.task_id if got else ""


async def kept_reply(store: Store, bot_id: str, request_uuid: str) -> dict[str, Any] | None:
    """The answer `store.read_poll` gives for this poll, without the bot."""
    reply, _ = await store.read_poll(bot_id, request_uuid)
    return reply


def recorder(
    uuid: str = "u1",
    seen: list[str] | None = None,
    *,
    bot_id: str = "bot1",
    expires_ts: float = FAR,
) -> Callable[[TaskResult, TaskRequest], Dispatch]:
    """A `record` for dispatch_next: the bot busy with the run, an event, the answer."""

    def record(result: TaskResult, request: TaskRequest) -> Dispatch:
        if seen is not None:
            seen.append(request.name)
        run_id = result.run_id
        return Dispatch(
            bot=Bot(bot_id=bot_id, task_id=run_id, task_name=request.name, last_seen_ts=NOW),
            event=BotEvent(bot_id=bot_id, ts=NOW, event_type="request_task", task_id=run_id),
            reply=PollReply(bot_id, uuid, {"cmd": "run", "task_id": run_id}, expires_ts),
        )

    return record
