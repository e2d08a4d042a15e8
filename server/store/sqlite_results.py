"""Task results in the SQLite backend: their rows, their queue places, claiming them.

Every write of a TaskResult goes through `store_result`, which keeps the
derived rows in step with the record: the `pending` row (present iff the
result is dispatchable), the tag rows, the `due_ts` deadline that list_due
reads, and the `reusable_hash` that find_reusable looks up (both derived
by server.store.rules). Helpers of server.store.sqlite; the caller owns the
transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence, Set
from typing import Any

from server import jsonio
from server.model import TaskResult
from server.store import codec
from server.store.rules import CLAIM_BATCH, claimed, due_ts, reusable_hash

# (priority, created_ts, task_id): a queue's order, best first.
QueueEntry = tuple[int, float, str]


# The columns of a stored result that store_result compares with the new
# record, in this order (select them as `{OLD_COLUMNS}` from task_results r).
OLD_COLUMNS = (
    "r.tags, r.state, r.created_ts, r.bot_id, r.due_ts, r.completed_ts, r.reusable_hash, r.failed"
)
_INDEXED = ("state", "created_ts", "bot_id", "due_ts", "completed_ts", "reusable_hash", "failed")


def store_result(
    db: sqlite3.Connection,
    result: TaskResult,
    old: Sequence[Any] | None,
    queued: bool,
) -> None:
    """Writes `result` as is (version included) with its derived rows.

    `old` is the stored row's OLD_COLUMNS, or None to insert a new row; only
    the columns that changed are set, so the indexes of the others are not
    rewritten. `queued` says whether the task has a `pending` row now.
    """
    tags = jsonio.dumps(result.tags)
    indexed = (
        result.state.value,
        result.created_ts,
        result.bot_id,
        due_ts(result),
        result.completed_ts,
        reusable_hash(result),
        int(result.failure),
    )
    if old is None:
        db.execute(
            "INSERT INTO task_results (state, created_ts, bot_id, due_ts, completed_ts,"
            " reusable_hash, failed, tags, version, data, task_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*indexed, tags, result.version, codec.dumps(result), result.task_id),
        )
        old_tags = None
    else:
        old_tags = old[0]
        changed = [i for i, value in enumerate(indexed) if value != old[i + 1]]
        sets = "".join(f"{_INDEXED[i]} = ?, " for i in changed)
        if tags != old_tags:
            sets += "tags = ?, "
        db.execute(
            f"UPDATE task_results SET {sets}version = ?, data = ? WHERE task_id = ?",
            (
                *(indexed[i] for i in changed),
                *((tags,) if tags != old_tags else ()),
                result.version,
                codec.dumps(result),
                result.task_id,
            ),
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
    elif queued:
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
    cached: TaskResult | None = None,
) -> TaskResult | None:
    """Claims one candidate inside the caller's write transaction, if still claimable.

    The candidate was read outside the transaction: it counts only if it is
    still queued in one of `queue_keys` and unexpired. `cached` is a copy of
    its record the caller may hold, used if it is still the stored version.
    Returns the stored record, or None when the task is gone or `assign`
    declines it.
    """
    row = db.execute(
        f"SELECT p.queue_key, r.version, r.data, {OLD_COLUMNS} FROM pending p"
        " JOIN task_results r USING (task_id) WHERE p.task_id = ? AND p.expiration_ts > ?",
        (task_id, now),
    ).fetchone()
    if row is None or row[0] not in queue_keys:
        return None
    version, data = row[1], row[2]
    current = cached if cached is not None and cached.version == version else None
    stored = claimed(current or codec.loads(TaskResult, data), version, assign)
    if stored is not None:
        store_result(db, stored, row[3:], queued=True)
    return stored


def queue_position(db: sqlite3.Connection, entry: QueueEntry, queue_key: str) -> int:
    """Counts the queued entries of `queue_key` strictly before `entry` in claim order.

    One range count on the pending_by_queue index: the cost grows with the
    answer, never with the size of other queues.
    """
    row = db.execute(
        "SELECT count(*) FROM pending"
        " WHERE queue_key = ? AND (priority, created_ts, task_id) < (?, ?, ?)",
        (queue_key, *entry),
    ).fetchone()
    count: int = row[0]
    return count


def count_queued(db: sqlite3.Connection, queue_key: str, now: float) -> int:
    """Counts the unexpired entries of `queue_key`: the candidates queue_heads yields.

    One range count on the pending_by_queue index, which carries
    expiration_ts: the table is never read, and other queues cost nothing.
    """
    row = db.execute(
        "SELECT count(*) FROM pending WHERE queue_key = ? AND expiration_ts > ?",
        (queue_key, now),
    ).fetchone()
    count: int = row[0]
    return count


def find_reusable(
    db: sqlite3.Connection, properties_hash: str, completed_after: float
) -> TaskResult | None:
    """The newest dedup source with this hash completed at or after `completed_after`.

    One seek on the task_results_by_reusable index, from its newest end.
    """
    row = db.execute(
        "SELECT data FROM task_results"
        " WHERE reusable_hash = ? AND completed_ts >= ?"
        " ORDER BY completed_ts DESC, task_id DESC LIMIT 1",
        (properties_hash, completed_after),
    ).fetchone()
    return None if row is None else codec.loads(TaskResult, row[0])
