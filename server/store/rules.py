"""The parts of the Store contract every backend applies the same way.

server/store/base.py states the contract; this module holds the rules both
backends (sqlite*.py, datastore*.py) apply word for word, so they cannot
drift apart: argument checks, which stored results a queue, the sweeper or
dedup may see, the compare-and-set of a claim, and how a listing is cut
into pages. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from server import errors
from server.model import Page, TaskRequest, TaskResult, TaskState, evolve
from server.store.base import StaleWrite

# Queue entries read per query in claim_next. Most polls take the first
# head, so a small batch keeps a poll at one short read per queue; a bot
# whose `assign` declines many candidates reads further batches.
CLAIM_BATCH = 8

# Expired poll replies the Datastore store deletes per purge (once a minute):
# one per bot at most goes stale, so this soon clears a fleet that went idle.
POLL_REPLY_PURGE_BATCH = 100

T = TypeVar("T")
U = TypeVar("U")


def check_limit(limit: int) -> None:
    """Refuses a page limit below 1."""
    if limit < 1:
        raise errors.InvalidRequest(f"page limit {limit} is not positive")


def check_output_write(offset: int) -> None:
    """Refuses an output write at a negative offset."""
    if offset < 0:
        raise errors.InvalidRequest(f"output offset {offset} is negative")


def check_output_read(offset: int, length: int) -> None:
    """Refuses an output read at a negative offset or of a length below -1."""
    if offset < 0 or length < -1:
        raise errors.InvalidRequest(f"cannot read {length} bytes at offset {offset}")


def check_new_task(request: TaskRequest, result: TaskResult) -> None:
    """Refuses to store a request with the result of another task (a caller's bug)."""
    if request.task_id != result.task_id:
        raise ValueError(f"request {request.task_id} with result {result.task_id}")


def next_version(task_id: str, stored: int, expected: int) -> int:
    """The version a compare-and-set writes; raises StaleWrite unless `stored` is `expected`."""
    if stored != expected:
        raise StaleWrite(f"task {task_id} is at version {stored}, not {expected}")
    return stored + 1


def claimed(
    stored: TaskResult, version: int, assign: Callable[[TaskResult], TaskResult | None]
) -> TaskResult | None:
    """The record a claim writes for a still claimable candidate, or None when `assign` declines.

    `version` is the stored version, read in the claim's transaction.
    """
    new = assign(stored)
    if new is None:
        return None
    if new.task_id != stored.task_id:
        raise ValueError(f"assign turned task {stored.task_id} into task {new.task_id}")
    return evolve(new, version=version + 1)


def due_ts(result: TaskResult) -> float | None:
    """The task's next deadline for the sweeper (list_due), or None when it has none.

    A pending task's is its current slice's expiration; a running one's is
    the earlier of its unconfirmed reservation and its liveness deadline;
    either's is earlier when its parent check comes first. An ended task is
    due from its end while its children are still to stop, so a sweeper
    finishes that for a server that ended it and died
    (server/scheduler/children.py).
    """
    if result.children_to_stop and not result.state.is_active:
        return result.completed_ts if result.completed_ts is not None else result.modified_ts
    deadline: float | None
    if result.state is TaskState.PENDING:
        deadline = result.expiration_ts
    elif result.state is TaskState.RUNNING:
        running = (result.reserved_until, result.dead_after_ts)
        deadline = min((t for t in running if t is not None), default=None)
    else:
        return None
    check = result.parent_check_ts
    if check is None or (deadline is not None and deadline <= check):
        return deadline
    return check


def reusable_hash(result: TaskResult) -> str | None:
    """The result's properties_hash if it can be a dedup source (find_reusable), else None."""
    if (
        result.state is TaskState.COMPLETED
        and not result.failure
        and not result.deduped_from
        and result.properties_hash
        and result.completed_ts is not None
    ):
        return result.properties_hash
    return None


def page(
    found: Sequence[T], limit: int, cursor_of: Callable[[T], str], load: Callable[[T], U]
) -> Page[U]:
    """A page of the first `limit` rows of `found`, read with limit + 1 to see if there is more.

    `load` makes an item of a row; `cursor_of` makes the cursor that resumes
    after a row, set only when a row was left over.
    """
    kept = found[:limit]
    more = len(found) > limit and len(kept) > 0
    return Page(items=[load(row) for row in kept], cursor=cursor_of(kept[-1]) if more else "")
