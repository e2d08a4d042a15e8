"""The one way a stored task changes: read, plan a pure transition, compare-and-set.

Every change of a task's result (handlers, the background loop, other
server processes) goes through `mutate` or `mutate_with`, so concurrent
writers never lose each other's changes: a write planned from a record
that changed meanwhile is refused by the Store (StaleWrite) and planned
again from the fresh record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from server.errors import Conflict, TaskNotFound
from server.model import TaskResult
from server.store.base import StaleWrite, Store

# How often a compare-and-set is retried under contention before giving up.
MAX_CAS_ATTEMPTS = 20


async def mutate(
    store: Store,
    task_id: str,
    change: Callable[[TaskResult], TaskResult | None],
    *,
    read: TaskResult | None = None,
) -> tuple[TaskResult, bool]:
    """Applies `change` to a task's result with compare-and-set, retrying on conflicts.

    `read` is the result as the caller has just read it: the first attempt
    plans from it instead of reading again. If it is stale, the Store
    refuses the write and the next attempt reads the stored record; if it
    needs no change, the stored record is read to decide again. Returns
    (stored result, whether it changed). Raises TaskNotFound.
    """

    async def plan(current: TaskResult) -> TaskResult | None:
        return change(current)

    return await mutate_with(store, task_id, plan, read=read)


async def mutate_with(
    store: Store,
    task_id: str,
    plan: Callable[[TaskResult], Awaitable[TaskResult | None]],
    *,
    read: TaskResult | None = None,
) -> tuple[TaskResult, bool]:
    """Like `mutate`, for a change that must read more (bots, queues) to decide.

    On a conflict the change is planned again from the fresh record, so what
    it read always matches the record it replaces.
    """
    for _ in range(MAX_CAS_ATTEMPTS):
        given, read = read, None
        current = given or await store.get_result(task_id)
        if current is None:
            raise TaskNotFound(task_id)
        new = await plan(current)
        if new is None:
            if given is not None:
                continue  # "no change" is decided on the stored record, never on a copy
            return current, False
        try:
            return await store.update_result(new), True
        except StaleWrite:
            continue
    raise Conflict(f"task {task_id} is changing too fast, try again")
