# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""Task lookups and listings in the Datastore backend.

Each function is one or a few queries on the TaskResult properties that
datastore_tasks.result_entity derives; server/store/index.yaml declares
the composite indexes they need. Functions here block: DatastoreStore runs
them in its worker threads.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from server.model import Page, TaskQuery, TaskResult, TaskState
from server.store.cursor import decode as decode_cursor
from server.store.cursor import encode as encode_cursor
from server.store.datastore_client import (
    STORE_META,
    TASK_RESULT,
    key,
    load,
    make_entity,
    query,
    run_transaction,
    sortable,
)
from server.store.datastore_tasks import order_key
from server.store.rules import check_limit, page


def queue_position(client: Any, result: TaskResult) -> int:
    """Counts the queued entries of `result.queue_key` strictly before `result`.

    Two keys-only queries on the (queue, priority, order_key) index: lower
    priority numbers, then the same priority with a smaller order_key. The
    cost grows with the answer, never with the size of other queues.
    """
    if not result.is_dispatchable:
        return 0
    ahead = query(
        client,
        TASK_RESULT,
        ("queue", "=", result.queue_key),
        ("priority", "<", result.priority),
        order=["priority", "order_key"],
        keys_only=True,
    )
    same = query(
        client,
        TASK_RESULT,
        ("queue", "=", result.queue_key),
        ("priority", "=", result.priority),
        ("order_key", "<", order_key(result.created_ts, result.task_id)),
        order=["order_key"],
        keys_only=True,
    )
    return _count(ahead.fetch()) + _count(same.fetch())


def count_queued(client: Any, queue_key: str, now: float) -> int:
    """Counts the entries of `queue_key` unexpired at `now`: one keys-only query.

    `expiration_ts` is not indexed, but a queued task's `due_ts` is its
    expiration (rules.due_ts of a PENDING task), so the query runs on the
    (queue, due_ts) index and reads no entity. Not a count aggregation:
    the emulator the tests run against does not implement
    RunAggregationQuery (501). The cost grows with the answer, never with
    other queues: about one key read per queued task. One exception: a
    child whose parent check has come (its creating server died before
    clearing it, server/scheduler/children.py) is due at that check, not at
    its expiration, so it is not counted until the sweep that is then due
    clears the check, within a sweep interval.
    """
    queued = query(
        client,
        TASK_RESULT,
        ("queue", "=", queue_key),
        ("due_ts", ">", float(now)),
        keys_only=True,
    )
    return _count(queued.fetch())


def find_reusable(client: Any, properties_hash: str, completed_after: float) -> TaskResult | None:
    """The newest dedup source with this hash completed at or after `completed_after`.

    One query on the (reusable_hash, completed_ts desc, __key__ desc) index,
    from its newest end: only results that can be a source carry the hash.
    """
    if not properties_hash:
        return None
    newest = query(
        client,
        TASK_RESULT,
        ("reusable_hash", "=", properties_hash),
        ("completed_ts", ">=", float(completed_after)),
        order=["-completed_ts", "-__key__"],
    )
    found = list(newest.fetch(limit=1))
    return load(TaskResult, found[0]) if found else None


def list_tasks(client: Any, task_query: TaskQuery) -> Page[TaskResult]:
    """Lists tasks newest first (created_ts, then task ID, descending), filtered.

    The created range is `created_after <= created_ts < created_before`;
    it and the cursor are bounds on `order_key`, the property the listing
    is sorted on. Tags, bot and a single state are equality filters that
    Datastore merges from the (property, order_key desc) indexes; several
    states are one query each, merged here (Datastore's IN is not in the
    emulator, and would need the same merge on its side).
    """
    check_limit(task_query.limit)
    upper: str | None = None
    if task_query.cursor:
        created_ts, task_id = decode_cursor("tasks", task_query.cursor, float, str)
        upper = order_key(created_ts, task_id)
    filters = _filters(task_query, upper)
    if filters is None:
        return Page(items=[])
    # None: no state filter, one query for all states.
    states: list[int | None] = [*sorted(s.value for s in task_query.states)] or [None]
    streams = [_newest_first(client, filters, state, task_query.limit + 1) for state in states]
    merged = heapq.merge(*streams, key=lambda e: str(e["order_key"]), reverse=True)
    return page(
        list(itertools.islice(merged, task_query.limit + 1)),
        task_query.limit,
        _cursor_after,
        lambda e: load(TaskResult, e),
    )


def count_tasks(client: Any, task_query: TaskQuery, cap: int | None) -> dict[TaskState, int]:
    """Counts per state, each one keys-only query on the listing's indexes (no entity read).

    Not a count aggregation: the emulator does not implement it (see
    count_queued). About one key read per task counted, at most `cap`.
    """
    filters = _filters(task_query, None)
    states = sorted(task_query.states or TaskState, key=lambda s: s.value)
    if filters is None or (cap is not None and cap <= 0):
        return dict.fromkeys(states, 0)
    return {
        state: _count(_newest_first(client, filters, state.value, cap, keys_only=True))
        for state in states
    }


# The StoreMeta entity that records since when failures are indexed.
FAILURES_INDEXED = "failures_indexed"


def failures_indexed_since(client: Any, now: float) -> str:
    """The order_key from which every failed result is in the `failed` index.

    Results written before a store of this version first checked the
    database (DatastoreStore.check, at the server's start) carry no `failed`
    property (datastore_tasks.result_entity); one created from then on gets
    it when it completes with a failure. The first check records that moment
    in a StoreMeta entity, and every later one reads it: it never moves.
    """
    meta = key(client, STORE_META, FAILURES_INDEXED)

    def work(tx: Any) -> str:
        found = client.get(meta, transaction=tx)
        if found is not None:
            return str(found["since"])
        since = sortable(now)
        tx.put(make_entity(client, STORE_META, FAILURES_INDEXED, {}, {"since": since}))
        return since

    return run_transaction(client, work)


def any_failed(client: Any, task_query: TaskQuery, indexed_since: str) -> bool:
    """Whether a COMPLETED result the query matches failed.

    One keys-only look at the `failed` index (a failed result created since
    `indexed_since` is always in it), then, for the results created before
    it, the old way: their COMPLETED entities read until one failed. On a
    database this version created there are none of those.
    """
    filters = _filters(task_query, None)
    if filters is None:
        return False
    failed = [*filters, ("failed", "=", True)]
    if next(_newest_first(client, failed, None, 1, keys_only=True), None) is not None:
        return True
    older = _filters(task_query, indexed_since)
    if older is None:
        return False
    completed = _newest_first(client, older, TaskState.COMPLETED.value, None)
    return any(load(TaskResult, e).failure for e in completed)


def _filters(task_query: TaskQuery, upper: str | None) -> list[tuple[str, str, Any]] | None:
    """The query's tags, bot and created range as filters below `upper`; None if it is empty."""
    if task_query.created_before is not None:
        before = sortable(task_query.created_before)
        upper = before if upper is None else min(upper, before)
    lower = None if task_query.created_after is None else sortable(task_query.created_after)
    if lower is not None and upper is not None and lower >= upper:
        return None
    filters: list[tuple[str, str, Any]] = [
        ("tags", "=", tag) for tag in dict.fromkeys(task_query.tags)
    ]
    if task_query.bot_id:
        filters.append(("bot_id", "=", task_query.bot_id))
    if lower is not None:
        filters.append(("order_key", ">=", lower))
    if upper is not None:
        filters.append(("order_key", "<", upper))
    return filters


def list_due(client: Any, now: float, limit: int) -> list[TaskResult]:
    """Tasks whose `due_ts` (server/store/rules.py) is at or before `now`, earliest first."""
    if limit < 1:
        return []
    due = query(client, TASK_RESULT, ("due_ts", "<=", float(now)), order=["due_ts"])
    return [load(TaskResult, e) for e in due.fetch(limit=limit)]


def _newest_first(
    client: Any,
    filters: list[tuple[str, str, Any]],
    state: int | None,
    limit: int | None,
    *,
    keys_only: bool = False,
) -> Iterator[Any]:
    """One state's share of a listing, newest first, at most `limit` entities (or keys)."""
    if state is not None:
        filters = [*filters, ("state", "=", state)]
    listing = query(client, TASK_RESULT, *filters, order=["-order_key"], keys_only=keys_only)
    return iter(listing.fetch(limit=limit))


def _cursor_after(entity: Any) -> str:
    """The cursor resuming a listing after this result: its (created_ts, task_id)."""
    result = load(TaskResult, entity)
    return encode_cursor("tasks", result.created_ts, result.task_id)


def _count(entities: Iterable[Any]) -> int:
    return sum(1 for _ in entities)
