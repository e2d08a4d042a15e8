"""A task's children: how a task becomes a parent, and how its children stop with it.

A child is a task whose request names `parent_task_id`; it is cancelled
when its parent stops (PROTOCOL.md 4.1), whatever the parent's final state:
COMPLETED, TIMED_OUT, KILLED, BOT_DIED, EXPIRED, CANCELED, ... Stopping a
child means cancelling it: a pending one ends CANCELED at once, a running
one is asked to stop and ends KILLED (transitions.cancel with kill_running).
A cancel of a task that is still running (it was only asked to stop)
cancels its children at once too, as Swarming's CancelTask does.

How it survives concurrency and crashes:

- Creating a child first marks its parent with `children_to_stop`
  (`adopt`, a compare-and-set that refuses a parent that has ended), then
  stores the child, then looks at the parent again (`confirm_parent`) and
  cancels the child at once if the parent ended meanwhile.
- Whoever ends a task (a bot's task_update, task_error or claim, a cancel,
  the sweeper) calls `stop_children` with the record its own
  compare-and-set stored. It cancels each active child, each with its own
  compare-and-set, and only then clears the parent's mark.
- A server that dies between ending a task and clearing its mark leaves
  the mark on an ended task, which makes that task due
  (server/store/rules.py `due_ts`): the next sweep, in any server process,
  calls `stop_children` again. Every step is idempotent (a child already
  cancelled or asked to stop is not changed again), so two processes doing
  it at once only repeat compare-and-sets that change nothing.

- The parent may also end between its child's `adopt` and the child's
  storing, too early for its own listing to see the child, and the
  creating server die before its second look. So a child is stored with
  a `parent_check_ts` PARENT_CHECK_SECS after its creation, which makes it
  due then (server/store/rules.py `due_ts`), and the second look clears
  it. Left set, by a server that died, the sweep at that time looks at the
  parent once (`parent_checked`), cancels the child if the parent has
  ended, and clears the check. Any later end of the parent lists the child.
"""

from __future__ import annotations

import dataclasses

from server import ids
from server.errors import InvalidRequest
from server.model import TaskQuery, TaskRequest, TaskResult, TaskState, evolve
from server.scheduler import transitions
from server.scheduler.mutation import mutate
from server.store.base import Store

# The tag the server adds to a child, naming its parent: children are found by it.
PARENT_TAG = "parent_task_id"
# Children listed per Store page while stopping them.
PAGE = 1000
ACTIVE = frozenset({TaskState.PENDING, TaskState.RUNNING})
# How long after its creation a sweep looks at a child's parent. Longer than
# any creation takes, so the creating server has long made its second look.
PARENT_CHECK_SECS = 10.0


def parent_tag(parent_id: str) -> str:
    """The tag that marks a child of `parent_id`."""
    return f"{PARENT_TAG}:{parent_id}"


async def adopt(store: Store, parent_id: str) -> TaskResult:
    """Marks the task `parent_id` as having children and returns it.

    Raises TaskNotFound, or InvalidRequest when the parent has ended: an
    ended task cannot have new children. Marking is not a change users see,
    so the parent's `modified_ts` stays.
    """

    def mark(parent: TaskResult) -> TaskResult | None:
        if not parent.state.is_active or parent.children_to_stop:
            return None
        return dataclasses.replace(parent, children_to_stop=True)

    parent, _ = await mutate(store, parent_id, mark)
    if not parent.state.is_active:
        raise InvalidRequest(
            f"parent_task_id {parent.task_id} is {parent.state.name}; "
            "a finished task cannot have new children"
        )
    return parent


async def confirm_parent(store: Store, child: TaskResult, parent_id: str, now: float) -> TaskResult:
    """The creation's second look at the parent of `child`, just stored; returns the child.

    A parent that ended after `adopt`, maybe before this child could be
    listed, gets the child cancelled at once; else the child's parent check
    is cleared, as the sweeper would do it later.
    """
    if not child.state.is_active:
        return child
    if await _parent_ended(store, parent_id):
        stored, _ = await cancel(store, child.task_id, now, kill_running=True)
    else:
        stored, _ = await mutate(store, child.task_id, _parent_seen)
    return stored


def _parent_seen(child: TaskResult) -> TaskResult | None:
    """Clears a child's parent check; None when there is none to clear."""
    return None if child.parent_check_ts is None else evolve(child, parent_check_ts=None)


async def parent_checked(
    store: Store, child: TaskResult, request: TaskRequest, now: float
) -> TaskResult:
    """`child` once its parent has been looked at: cancelled if the parent ended, check cleared.

    A running child is asked to stop, as when its parent's end reaches it.
    The sweeper calls it inside its compare-and-set of the child, past
    `parent_check_ts`; `request` is the child's.
    """
    if await _parent_ended(store, ids.split_run_id(request.parent_task_id)[0]):
        child = transitions.cancel(child, now=now, kill_running=True) or child
    return evolve(child, parent_check_ts=None)


async def _parent_ended(store: Store, parent_id: str) -> bool:
    """True when the parent has ended, or is gone."""
    parent = await store.get_result(parent_id)
    return parent is None or not parent.state.is_active


async def stop_children(store: Store, parent: TaskResult, now: float) -> bool:
    """Cancels the active children (and theirs) of `parent` if it has ended; True if it had.

    `parent` is the record the caller's compare-and-set stored. Call it
    after any change that may have ended a task: it does nothing for an
    active task or one without children to stop.
    """
    if parent.state.is_active or not parent.children_to_stop:
        return False
    await _cancel_children(store, parent, now)
    return True


async def cancel(
    store: Store, task_id: str, now: float, *, kill_running: bool
) -> tuple[TaskResult, bool]:
    """Cancels a pending task, or asks a running one to stop if `kill_running`; then its children.

    Returns (stored result, whether it changed). The children are looked up
    whatever the task's mark says, so those of a parent stored before marks
    existed are found too.
    """
    result, changed = await mutate(
        store, task_id, lambda r: transitions.cancel(r, now=now, kill_running=kill_running)
    )
    if changed:
        await _cancel_children(store, result, now)
    return result, changed


async def _cancel_children(store: Store, parent: TaskResult, now: float) -> None:
    """Cancels every active child of `parent`, then clears its mark if it has ended."""
    query = TaskQuery(states=ACTIVE, tags=[parent_tag(parent.task_id)], limit=PAGE)
    while True:
        page = await store.list_tasks(query)
        for child in page.items:
            await cancel(store, child.task_id, now, kill_running=True)
        if not page.cursor:
            break
        query = dataclasses.replace(query, cursor=page.cursor)
    if not parent.state.is_active and parent.children_to_stop:
        await mutate(store, parent.task_id, _unmark)


def _unmark(parent: TaskResult) -> TaskResult | None:
    """Clears the mark of an ended task; None when there is nothing to clear."""
    if parent.state.is_active or not parent.children_to_stop:
        return None
    return dataclasses.replace(parent, children_to_stop=False)
