"""Task listings and counts in the SQLite backend: one query shape, filtered as TaskQuery says.

A listing reads its page newest first from the (state, created_ts) or
(created_ts) index; a count reads the same ranges in the index and no
record (`SELECT count(*)`), so counting a deep history costs index entries,
never a decoded result. Helpers of server.store.sqlite.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from server.model import Page, TaskQuery, TaskResult, TaskState
from server.store import codec, rules
from server.store.cursor import decode as decode_cursor
from server.store.cursor import encode as encode_cursor
from server.store.sqlite_sql import marks, where


def filters(query: TaskQuery) -> tuple[list[str], list[Any]]:
    """The conditions (and their arguments) of everything `query` asks but its states and cursor."""
    conditions: list[str] = []
    args: list[Any] = []
    for tag in dict.fromkeys(query.tags):
        conditions.append("task_id IN (SELECT task_id FROM task_tags WHERE tag = ?)")
        args.append(tag)
    if query.bot_id:
        # Says what the partial task_results_by_bot index holds, so it is used.
        conditions.append("bot_id = ? AND bot_id != ''")
        args.append(query.bot_id)
    if query.created_after is not None:
        conditions.append("created_ts >= ?")
        args.append(query.created_after)
    if query.created_before is not None:
        conditions.append("created_ts < ?")
        args.append(query.created_before)
    return conditions, args


def list_tasks(db: sqlite3.Connection, query: TaskQuery) -> Page[TaskResult]:
    """One page newest first, with one query; tags are joined from task_tags."""
    rules.check_limit(query.limit)
    conditions, args = filters(query)
    if query.states:
        values = sorted(s.value for s in query.states)
        conditions.append(f"state IN ({marks(values)})")
        args.extend(values)
    if query.cursor:
        conditions.append("(created_ts, task_id) < (?, ?)")
        args.extend(decode_cursor("tasks", query.cursor, float, str))
    rows = db.execute(
        f"SELECT created_ts, task_id, data FROM task_results {where(conditions)}"
        " ORDER BY created_ts DESC, task_id DESC LIMIT ?",
        (*args, query.limit + 1),
    ).fetchall()
    return rules.page(
        rows,
        query.limit,
        lambda row: encode_cursor("tasks", row[0], row[1]),
        lambda row: codec.loads(TaskResult, row[2]),
    )


def count_tasks(db: sqlite3.Connection, query: TaskQuery, cap: int | None) -> dict[TaskState, int]:
    """Counts per state, each one range of the (state, created_ts) index (Store.count_tasks)."""
    conditions, args = filters(query)
    clause = where(["state = ?", *conditions])
    limit = "" if cap is None else " LIMIT ?"
    counts: dict[TaskState, int] = {}
    for state in sorted(query.states or TaskState, key=lambda s: s.value):
        row = db.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM task_results {clause}{limit})",
            (state.value, *args, *(() if cap is None else (max(cap, 0),))),
        ).fetchone()
        counts[state] = row[0]
    return counts


def any_failed(db: sqlite3.Connection, query: TaskQuery) -> bool:
    """Whether a COMPLETED result the query matches failed, from the partial index of failures."""
    conditions, args = filters(query)
    clause = where(["state = ?", "failed = 1", *conditions])
    row = db.execute(
        f"SELECT EXISTS (SELECT 1 FROM task_results {clause})",
        (TaskState.COMPLETED.value, *args),
    ).fetchone()
    return bool(row[0])
