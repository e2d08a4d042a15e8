# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""Tasks in the Datastore backend: creating them, compare-and-set, claiming.

Every write of a TaskResult goes through `result_entity`, which derives the
indexed properties from the record, so a task's place in its queue, its
deadline and its dedup eligibility always follow the record (the entity
design is in server/store/datastore.py). The lookups and listings of tasks
are in datastore_task_queries. Functions here block: DatastoreStore runs
them in its worker threads.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from collections.abc import Callable, Iterator, Sequence, Set
from typing import Any

from server import errors
from server.model import TaskRequest, TaskResult, TaskState
from server.store import codec, datastore_bots
from server.store.base import Dispatch
from server.store.datastore_client import (
    TASK_REQUEST,
    TASK_REQUEST_UUID,
    TASK_RESULT,
    Contention,
    get_multi,
    key,
    load,
    make_entity,
    query,
    run_transaction,
    sortable,
)
from server.store.rules import (
    CLAIM_BATCH,
    check_new_task,
    claimed,
    due_ts,
    next_version,
    reusable_hash,
)

# Transaction runs spent on one claim candidate before moving on to the next:
# a candidate that keeps colliding is being taken by another claimer.
CLAIM_ATTEMPTS = 3

# (priority, order_key, task_id): a queue's order, best first.
QueueEntry = tuple[int, str, str]


def order_key(created_ts: float, task_id: str) -> str:
    """The `order_key` property: sorts by creation time, then by task ID."""
    return f"{sortable(created_ts)}:{task_id}"


def result_entity(client: Any, result: TaskResult) -> Any:
    """The TaskResult entity of `result`, with the properties its queries use.

    `queue` exists only while the task is dispatchable, `due_ts` only while
    it has a deadline, `reusable_hash` and `completed_ts` only while it can
    be a dedup source, `failed` only when it completed with a failure: an
    entity without a property is in no index on it.
    """
    indexed: dict[str, Any] = {
        "state": result.state.value,
        "order_key": order_key(result.created_ts, result.task_id),
        "bot_id": result.bot_id,
        "tags": list(dict.fromkeys(result.tags)),
        "priority": result.priority,
    }
    if result.is_dispatchable:
        indexed["queue"] = result.queue_key
    due = due_ts(result)
    if due is not None:
        indexed["due_ts"] = float(due)
    if result.state is TaskState.COMPLETED and result.failure:
        indexed["failed"] = True
    reusable = reusable_hash(result)
    if reusable is not None and result.completed_ts is not None:
        indexed["reusable_hash"] = reusable
        indexed["completed_ts"] = float(result.completed_ts)
    unindexed = {
        "version": result.version,
        "expiration_ts": float(result.expiration_ts),
        "data": codec.dumps(result),
    }
    return make_entity(client, TASK_RESULT, result.task_id, indexed, unindexed)


def create_task(
    client: Any, request: TaskRequest, result: TaskResult, dispatch: Dispatch | None = None
) -> tuple[TaskResult, bool]:
    """Stores request, result, the request_uuid record and any dispatch in one transaction.

    Returns (existing result, False) when the request_uuid is taken, else
    (result, True). Raises Conflict if a task with this ID exists.
    """
    check_new_task(request, result)
    request_key = key(client, TASK_REQUEST, request.task_id)
    result_key = key(client, TASK_RESULT, result.task_id)
    uuid_key = (
        key(client, TASK_REQUEST_UUID, request.request_uuid) if request.request_uuid else None
    )

    def work(tx: Any) -> tuple[TaskResult, bool]:
        keys = (
            [request_key, result_key] if uuid_key is None else [request_key, result_key, uuid_key]
        )
        found = get_multi(client, keys, tx)
        if uuid_key in found:
            original = str(found[uuid_key]["task_id"])
            existing = client.get(key(client, TASK_RESULT, original), transaction=tx)
            if existing is None:
                raise errors.Conflict(
                    f"request_uuid {request.request_uuid} names lost task {original}"
                )
            return load(TaskResult, existing), False
        if request_key in found or result_key in found:
            raise errors.Conflict(f"task {request.task_id} already exists")
        tx.put(
            make_entity(client, TASK_REQUEST, request.task_id, {}, {"data": codec.dumps(request)})
        )
        tx.put(result_entity(client, result))
        if uuid_key is not None:
            tx.put(
                make_entity(
                    client,
                    TASK_REQUEST_UUID,
                    request.request_uuid,
                    {},
                    {"task_id": request.task_id},
                )
            )
        if dispatch is not None:
            _put_dispatch(client, tx, dispatch)
        return result, True

    return run_transaction(client, work)


def get_request(client: Any, task_id: str) -> TaskRequest | None:
    """Returns the request of a task, or None."""
    entity = client.get(key(client, TASK_REQUEST, task_id))
    return None if entity is None else load(TaskRequest, entity)


def get_result(client: Any, task_id: str) -> TaskResult | None:
    """Returns the result of a task, or None."""
    entity = client.get(key(client, TASK_RESULT, task_id))
    return None if entity is None else load(TaskResult, entity)


def update_result(client: Any, result: TaskResult) -> TaskResult:
    """Compare-and-set on `version` in a transaction; returns the stored record.

    Raises StaleWrite when the stored version differs, TaskNotFound when
    there is no such task. A collision runs the check again, so a write that
    lost a race to another writer ends in StaleWrite, never in a lost update.
    """
    result_key = key(client, TASK_RESULT, result.task_id)

    def work(tx: Any) -> TaskResult:
        entity = client.get(result_key, transaction=tx)
        if entity is None:
            raise errors.TaskNotFound(result.task_id)
        version = next_version(result.task_id, int(entity["version"]), result.version)
        stored = dataclasses.replace(result, version=version)
        tx.put(result_entity(client, stored))
        return stored

    return run_transaction(client, work)


class ClaimsInFlight:
    """The candidates the claims of one store are trying at this moment.

    Polls arrive in bursts, and every claimer reads the same queue heads:
    if all of them tried the first head, all but one would collide (a
    Datastore transaction that collides waits, then aborts), so a burst of
    N claims would cost N² transactions. Instead a claimer passes over a
    candidate that another claim of the same replica is trying, and comes
    back to it only if it has nothing else. Claims of other replicas still
    collide, which the transaction settles.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trying: set[str] = set()

    def take(self, task_id: str) -> bool:
        """Marks `task_id` as being tried; False if another claim is trying it."""
        with self._lock:
            if task_id in self._trying:
                return False
            self._trying.add(task_id)
            return True

    def release(self, task_id: str) -> None:
        """Marks `task_id` as no longer being tried."""
        with self._lock:
            self._trying.discard(task_id)


def claim_next(
    client: Any,
    queue_keys: Sequence[str],
    now: float,
    assign: Callable[[TaskResult], TaskResult | None],
    in_flight: ClaimsInFlight | None = None,
) -> TaskResult | None:
    """Hands the best dispatchable task of `queue_keys` to `assign`, atomically.

    Reads only the heads of the queues, merged best first, outside any
    transaction; then re-reads each candidate in a transaction and writes
    it with a compare-and-set, since another claimer (in this process or
    another replica) may have taken it meanwhile. Candidates that another
    claim of `in_flight` is trying come last (see ClaimsInFlight). `assign`
    runs in the calling worker thread, and again if the transaction
    collides: it must be a pure function of the record it gets.
    """
    claimed = _claim(client, queue_keys, now, assign, None, in_flight)
    return None if claimed is None else claimed[0]


def dispatch_next(
    client: Any,
    queue_keys: Sequence[str],
    now: float,
    assign: Callable[[TaskResult], TaskResult | None],
    record: Callable[[TaskResult, TaskRequest], Dispatch],
    in_flight: ClaimsInFlight | None = None,
) -> tuple[TaskResult, Dispatch] | None:
    """claim_next, with what `record` makes of the claimed task put in the claim's transaction."""
    claimed = _claim(client, queue_keys, now, assign, record, in_flight)
    if claimed is None:
        return None
    result, dispatch = claimed
    assert dispatch is not None, "a dispatch is recorded with every claim"
    return result, dispatch


def _claim(
    client: Any,
    queue_keys: Sequence[str],
    now: float,
    assign: Callable[[TaskResult], TaskResult | None],
    record: Callable[[TaskResult, TaskRequest], Dispatch] | None,
    in_flight: ClaimsInFlight | None,
) -> _Claimed | None:
    keys = frozenset(queue_keys)
    in_flight = in_flight or ClaimsInFlight()
    heads = [queue_heads(client, queue, now) for queue in sorted(keys)]
    passed_over: list[str] = []
    for _priority, _order_key, task_id in heapq.merge(*heads):
        if not in_flight.take(task_id):
            passed_over.append(task_id)
            continue
        if claimed := _try_candidate(client, task_id, keys, now, assign, record, in_flight):
            return claimed
    # The other claim may have been declined by its `assign` (another bot).
    for task_id in passed_over:
        if in_flight.take(task_id) and (
            claimed := _try_candidate(client, task_id, keys, now, assign, record, in_flight)
        ):
            return claimed
    return None


# A claimed task's stored result, and what was recorded with the claim.
_Claimed = tuple[TaskResult, Dispatch | None]


def _try_candidate(
    client: Any,
    task_id: str,
    queue_keys: Set[str],
    now: float,
    assign: Callable[[TaskResult], TaskResult | None],
    record: Callable[[TaskResult, TaskRequest], Dispatch] | None,
    in_flight: ClaimsInFlight,
) -> _Claimed | None:
    """Claims a candidate taken in `in_flight`, then releases it; None when it cannot."""
    try:
        return _claim_candidate(client, task_id, queue_keys, now, assign, record)
    except Contention:
        # Another replica is taking it, or kept writing it: try the next one.
        return None
    finally:
        in_flight.release(task_id)


def queue_heads(client: Any, queue: str, now: float) -> Iterator[QueueEntry]:
    """Yields a queue's unexpired entries best first, read lazily in small batches.

    One query on the (queue, priority, order_key) index per batch, so the
    cost does not depend on how much other work is pending. Expired entries
    (the sweeper ends them soon) are skipped here: filtering them in the
    query would need a second inequality property and break the order.
    """
    cursor = None
    while True:
        heads = query(client, TASK_RESULT, ("queue", "=", queue), order=["priority", "order_key"])
        batch = heads.fetch(limit=CLAIM_BATCH, start_cursor=cursor)
        count = 0
        for entity in batch:
            count += 1
            if float(entity["expiration_ts"]) > now:
                yield int(entity["priority"]), str(entity["order_key"]), str(entity.key.name)
        if count < CLAIM_BATCH:
            return
        cursor = batch.next_page_token


def has_heads(client: Any, queue: str, now: float) -> bool:
    """True when the queue holds an unexpired entry: one query of its first batch."""
    return next(queue_heads(client, queue, now), None) is not None


def _claim_candidate(
    client: Any,
    task_id: str,
    queue_keys: Set[str],
    now: float,
    assign: Callable[[TaskResult], TaskResult | None],
    record: Callable[[TaskResult, TaskRequest], Dispatch] | None,
) -> _Claimed | None:
    """Claims one candidate if it is still queued in `queue_keys` and unexpired.

    Returns the stored record (and the dispatch `record` made of it, put in
    the same transaction), or None when the task is gone or `assign`
    declines it. Raises Contention when it kept colliding.
    """
    result_key = key(client, TASK_RESULT, task_id)

    def work(tx: Any) -> _Claimed | None:
        entity = client.get(result_key, transaction=tx)
        if entity is None or entity.get("queue") not in queue_keys:
            return None
        if float(entity["expiration_ts"]) <= now:
            return None
        stored = claimed(load(TaskResult, entity), int(entity["version"]), assign)
        if stored is None:
            return None
        tx.put(result_entity(client, stored))
        dispatch = None
        if record is not None:
            # A request never changes: it is read outside the transaction.
            request = get_request(client, task_id)
            if request is None:
                raise errors.TaskNotFound(task_id)
            dispatch = record(stored, request)
            _put_dispatch(client, tx, dispatch)
        return stored, dispatch

    return run_transaction(client, work, attempts=CLAIM_ATTEMPTS)


def _put_dispatch(client: Any, tx: Any, dispatch: Dispatch) -> None:
    """The bot, its event and the poll's answer for replay, in the transaction `tx`."""
    tx.put(datastore_bots.bot_entity(client, dispatch.bot))
    tx.put(datastore_bots.event_entity(client, dispatch.event))
    if dispatch.reply.request_uuid:
        tx.put(datastore_bots.reply_entity(client, dispatch.reply))
