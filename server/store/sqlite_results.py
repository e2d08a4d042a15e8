"""Task results in the SQLite backend: their rows, their queue places, claiming them.

Every write of a TaskResult goes through `store_result`, which keeps the
derived rows in step with the record: the `pending` row (present iff the
result is dispatchable), the tag rows, and the `due_ts` deadline that
list_due reads. Helpers of server.store.sqlite; the caller owns the
transaction.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator, Set

from server.model import TaskResult, TaskState
from server.store import codec

# Queue entries read per index lookup in claim_next. Most polls take the
# first head, so a small batch keeps a poll at one short range read per
# queue; a bot whose `assign` skips many candidates reads further batches.
CLAIM_BATCH = 8

# (priority, created_ts, task_id): a queue's order, best first.
QueueEntry = tuple[int, float, str]


def due_ts(result: TaskResult) -> float | None:
    """The task's next deadline for the sweeper, or None when it has none.

    A pending task's is its current slice's expiration; a running one's is
    the earlier of its unconfirmed reservation and its liveness deadline.
    """
    if result.state is TaskState.PENDING:
        return result.expiration_ts
    if result.state is TaskState.RUNNING:
        deadlines = [t for t in (result.reserved_until, result.dead_after_ts) if t is not None]
        return min(deadlines, default=None)
    return None


def store_result(db: sqlite3.Connection, result: TaskResult, old_tags: str | None) -> None:
    """Writes `result` as is (version included) with its derived rows.

    `old_tags` is the stored row's `tags` column, or None to insert a new row.
    """
    tags = json.dumps(result.tags, separators=(",", ":"))
    row = (
        result.state.value,
        result.created_ts,
        result.bot_id,
        due_ts(result),
        tags,
        result.version,
        codec.dumps(result),
        result.task_id,
    )
    if old_tags is None:
        db.execute(
            "INSERT INTO task_results"
            " (state, created_ts, bot_id, due_ts, tags, version, data, task_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
    else:
        db.execute(
            "UPDATE task_results SET state = ?, created_ts = ?, bot_id = ?, due_ts = ?,"
            " tags = ?, version = ?, data = ? WHERE task_id = ?",
            row,
        )
    # Tags practically never change after creation: skip the rewrite then.
    if tags != old_tags:
        if old_tags is not None:
            db.execute("DELETE FROM task_tags WHERE task_id = ?", (result.task_id,))
        db.executemany(
            "INSERT OR IGNORE INTO task_tags (tag, task_id) VALUES (?, ?)",
            [(tag, result.task_id) for tag in result.tags],
        )
    if result.is_dispatchable:
        db.execute(
            "INSERT OR REPLACE INTO pending"
            " (task_id, queue_key, priority, created_ts, expiration_ts) VALUES (?, ?, ?, ?, ?)",
            (
                result.task_id,
                result.queue_key,
                result.priority,
                result.created_ts,
                result.expiration_ts,
            ),
        )
    else:
        db.execute("DELETE FROM pending WHERE task_id = ?", (result.task_id,))


def queue_heads(db: sqlite3.Connection, queue_key: str, now: float) -> Iterator[QueueEntry]:
    """Yields a queue's unexpired entries best first, read lazily in small batches.

    Each batch is one range read of the pending_by_queue index, so the cost
    does not depend on how much other work is pending. Batches are fetched
    whole: no statement stays open across the caller's transactions.
    """
    after: QueueEntry | None = None
    while True:
        if after is None:
            rows = db.execute(
                "SELECT priority, created_ts, task_id FROM pending"
                " WHERE queue_key = ? AND expiration_ts > ?"
                " ORDER BY priority, created_ts, task_id LIMIT ?",
                (queue_key, now, CLAIM_BATCH),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT priority, created_ts, task_id FROM pending"
                " WHERE queue_key = ? AND (priority, created_ts, task_id) > (?, ?, ?)"
                " AND expiration_ts > ? ORDER BY priority, created_ts, task_id LIMIT ?",
                (queue_key, *after, now, CLAIM_BATCH),
            ).fetchall()
        yield from rows
        if len(rows) < CLAIM_BATCH:
            return
        after = rows[-1]


def claim_candidate(
    db: sqlite3.Connection,
    task_id: str,
    queue_keys: Set[str],
    now: float,
    assign: Callable[[TaskResult], TaskResult | None],
) -> TaskResult | None:
    """Claims one candidate inside the caller's write transaction, if still claimable.

    The candidate was read outside the transaction: it counts only if it is
    still queued in one of `queue_keys` and unexpired. Returns the stored
    record, or None when the task is gone or `assign` declines it.
    """
    row = db.execute(
        "SELECT p.queue_key, r.version, r.tags, r.data FROM pending p"
        " JOIN task_results r USING (task_id) WHERE p.task_id = ? AND p.expiration_ts > ?",
        (task_id, now),
    ).fetchone()
    if row is None or row[0] not in queue_keys:
        return None
    _, version, tags, data = row
    new = assign(codec.loads(TaskResult, data))
    if new is None:
        return None
    if new.task_id != task_id:
        raise ValueError(f"assign turned task {task_id} into task {new.task_id}")
    stored = dataclasses.replace(new, version=version + 1)
    store_result(db, stored, old_tags=tags)
    return stored
