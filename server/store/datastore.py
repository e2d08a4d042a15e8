# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""The Cloud Datastore Store backend, for several server replicas on one database.

Implements server.store.base.Store with google-cloud-datastore against a
Firestore in Datastore mode database (every Datastore database today: all
queries are strongly consistent, entity groups no longer limit writes) or
the emulator. All state lives in Datastore, so replicas share nothing else.
Records are kept whole as JSON made by server.store.codec in an unindexed
`data` property, next to indexed copies of the fields queries use.

Entities (kind: key name; indexed properties; unindexed ones):

- TaskRequest: task_id; -; data.
- TaskRequestUuid: request_uuid; -; task_id. Makes request_uuid unique:
  create_task reads and writes it in the transaction that stores the task.
- TaskResult: task_id; state, order_key, bot_id, tags, priority, and only
  while they apply: queue (while dispatchable), due_ts (while active with a
  deadline), reusable_hash + completed_ts (while a dedup source), failed
  (COMPLETED with a failure); version,
  expiration_ts, data. `order_key` is the creation time as order-preserving
  hex then the task ID, so one property sorts "by time, then by ID": a
  queue is the (queue, priority, order_key) index, the task listing runs
  on order_key descending.
- Bot: bot_id; dimensions (["key","value"] tokens), quarantined, busy;
  last_seen_ts, data.
- BotEvent: "<bot_id>/<sortable ts>/<unique suffix>"; bot_id; data.
- PollReply: bot_id (one per bot: its last dispatch's answer); expires_ts;
  request_uuid, reply.
- Queue: queue key; -; created_ts, data. Never changed once recorded, so a
  store keeps the ones it read (server/store/datastore_queues.py).
- Output: run_id; -; size. OutputChunk: "<run_id>/<index>"; -; data.
- TaskReportLog: task_id; -; count. TaskReport: "<task_id>/<n>"; -; data.
  TaskReportKey: "<task_id, %-quoted>/<key>"; -; - (a keyed report was added).
- SigningKeyring: purpose; -; keys (server/store/datastore_keys.py).
- ApiToken: token_id; -; data (server/store/datastore_tokens.py).
- StoreMeta: "failures_indexed"; -; since (the order_key from which every
  failed result has `failed`: results written before carry none).

No entity has a parent: nothing needs an ancestor query, and one root per
entity keeps writes to different records independent. Transactions make
each compound operation atomic: create_task (request_uuid uniqueness),
update_result and claim_next (compare-and-set on `version`), ensure_queue,
add_report and each group of output chunks; colliding transactions run
again a bounded number of times (datastore_client.run_transaction). The
claims of one replica spread over a queue's head rather than all trying
its first entry (datastore_tasks.ClaimsInFlight), so a burst of polls does
not turn into a burst of colliding transactions. The composite indexes
the queries need are in server/store/index.yaml; the emulator in the
tests runs with --require_indexes against that file, so a query that
needs an undeclared index fails the contract suite (test_contract_listing
runs every combination of listing filters).

Threading: the client is synchronous, so every call runs in this store's
own bounded thread pool (not asyncio.to_thread's default executor, which
aiohttp's DNS lookups share): the event loop never waits on Datastore, and
at most MAX_WORKERS calls are in flight per replica, more wait their turn.
A caller cancelled while waiting does not stop the call: it completes in
its thread (a claim made that way expires with its reservation).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from server.clock import Clock, SystemClock
from server.model import (
    ApiToken,
    Bot,
    BotEvent,
    BotQuery,
    Page,
    Queue,
    SigningKey,
    TaskQuery,
    TaskReport,
    TaskRequest,
    TaskResult,
    TaskState,
)
from server.store import (
    datastore_bots,
    datastore_keys,
    datastore_output,
    datastore_queues,
    datastore_reports,
    datastore_tasks,
    datastore_tokens,
    rules,
)
from server.store import datastore_client as dc
from server.store import datastore_task_queries as task_queries
from server.store.base import Dispatch

# Store calls in flight at once per replica. Each holds a thread blocked on
# one RPC (a few ms to tens of ms); past this, calls queue for a thread and
# polls and API calls slow down instead of the replica opening ever more RPCs.
MAX_WORKERS = 32
# How often list_due purges expired poll replies, in seconds of the store clock.
REPLY_PURGE_SECS = 60.0

P = ParamSpec("P")
T = TypeVar("T")


class DatastoreStore:
    """A Store in a Datastore database; see the module docstring."""

    def __init__(
        self, client: Any, clock: Clock, *, owns_client: bool, max_workers: int = MAX_WORKERS
    ) -> None:
        """Wraps a client; use `open` instead."""
        self._client = client
        self._clock = clock
        self._owns_client = owns_client
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="datastore"
        )
        self._closed = False
        self._queues = datastore_queues.KnownQueues()
        self._claims = datastore_tasks.ClaimsInFlight()
        # When list_due last purged expired poll replies (store clock).
        self._replies_purged_ts = 0.0
        # The order_key from which failures are indexed (task_queries.any_failed).
        self._failures_since: str | None = None

    @classmethod
    async def open(
        cls,
        project: str | None,
        *,
        namespace: str | None = None,
        database: str | None = None,
        clock: Clock | None = None,
        client: Any = None,
        max_workers: int = MAX_WORKERS,
    ) -> DatastoreStore:
        """Opens the store of `project`'s `database`, in `namespace` (None: the default ones).

        A project of None is found from the environment (datastore_client.connect).
        With DATASTORE_EMULATOR_HOST set, the emulator there is used (the
        client library reads the variable and uses anonymous credentials);
        else Application Default Credentials. A `client` passed in is used
        as is (its project and namespace win) and left open by `close`.
        `clock` decides when stored poll replies count as expired, and the
        moment the first store records for the failure index: pass the
        server's clock.
        """
        owns_client = client is None
        if client is None:
            # Finding credentials may read files or ask a metadata server.
            client = await asyncio.to_thread(dc.connect, project, namespace, database)
        return cls(client, clock or SystemClock(), owns_client=owns_client, max_workers=max_workers)

    @property
    def client(self) -> Any:
        """The underlying google.cloud.datastore.Client, for diagnostics and tests."""
        return self._client

    async def check(self) -> None:
        """One read-write transaction: credentials, project, database and access are all right.

        It reads, or records the first time, since when failed results are
        indexed (task_queries.failures_indexed_since).
        """
        await self._failures_indexed_since()

    async def close(self) -> None:
        """Waits for the calls in flight, then closes the client; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._owns_client:
            dc.close(self._client)

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs a blocking Datastore function in the store's threads."""
        call = functools.partial(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, dc.translate_errors, call)

    # Bots.

    async def get_bot(self, bot_id: str) -> Bot | None:
        """Returns the bot, or None if it was never seen."""
        return await self._call(datastore_bots.get_bot, self._client, bot_id)

    async def put_bot(self, bot: Bot) -> None:
        """Creates or replaces the bot record (last writer wins)."""
        await self._call(datastore_bots.put_bot, self._client, bot)

    async def touch_bot(self, bot: Bot) -> None:
        """Writes the time and state at once (replicas read each other's), in a transaction."""
        await self._call(datastore_bots.touch_bot, self._client, bot)

    async def list_bots(self, query: BotQuery) -> Page[Bot]:
        """Lists bots by ID, filtered as `query` says, paged by `query.cursor`."""
        return await self._call(datastore_bots.list_bots, self._client, query)

    async def add_bot_event(self, event: BotEvent) -> None:
        """Appends an event to the bot's history."""
        await self._call(datastore_bots.add_bot_event, self._client, event)

    async def list_bot_events(self, bot_id: str, limit: int, cursor: str = "") -> Page[BotEvent]:
        """Lists a bot's events, newest first."""
        return await self._call(datastore_bots.list_bot_events, self._client, bot_id, limit, cursor)

    # Poll replay.

    async def read_poll(
        self, bot_id: str, request_uuid: str
    ) -> tuple[dict[str, Any] | None, Bot | None]:
        """The answer stored for this poll if unexpired, and the bot: one lookup of both."""
        return await self._call(
            datastore_bots.read_poll, self._client, bot_id, request_uuid, self._clock.now()
        )

    # Queues.

    async def ensure_queue(self, queue: Queue) -> bool:
        """Records a queue; returns True if it was not known before (across replicas)."""
        return await self._call(self._queues.ensure, self._client, queue)

    async def list_queues(self) -> list[Queue]:
        """Returns every known queue, oldest first."""
        return await self._call(self._queues.list, self._client)

    # Tasks.

    async def create_task(
        self, request: TaskRequest, result: TaskResult, dispatch: Dispatch | None = None
    ) -> tuple[TaskResult, bool]:
        """Stores a new task in one transaction over its request, result and request_uuid."""
        return await self._call(
            datastore_tasks.create_task, self._client, request, result, dispatch
        )

    async def get_request(self, task_id: str) -> TaskRequest | None:
        """Returns the request of a task by summary ID."""
        return await self._call(datastore_tasks.get_request, self._client, task_id)

    async def get_result(self, task_id: str) -> TaskResult | None:
        """Returns the result of a task by summary ID."""
        return await self._call(datastore_tasks.get_result, self._client, task_id)

    async def peek_result(self, task_id: str) -> TaskResult | None:
        """get_result: this store keeps no records in memory."""
        return await self.get_result(task_id)

    async def update_result(self, result: TaskResult) -> TaskResult:
        """Compare-and-set on `version` in a transaction, run again when it collides."""
        return await self._call(datastore_tasks.update_result, self._client, result)

    async def claim_next(
        self,
        queue_keys: Sequence[str],
        now: float,
        assign: Callable[[TaskResult], TaskResult | None],
    ) -> TaskResult | None:
        """Claims with a transaction per candidate, spread over the heads (ClaimsInFlight).

        `assign` runs in a worker thread, and runs again for the same task
        when its transaction collides: it must be a pure function.
        """
        if not queue_keys:
            return None
        return await self._call(
            datastore_tasks.claim_next, self._client, queue_keys, now, assign, self._claims
        )

    async def dispatch_next(
        self,
        queue_keys: Sequence[str],
        now: float,
        assign: Callable[[TaskResult], TaskResult | None],
        record: Callable[[TaskResult, TaskRequest], Dispatch],
    ) -> tuple[TaskResult, Dispatch] | None:
        """Claims as claim_next does, with the bot, its event and the reply in the transaction.

        `assign` and `record` run in a worker thread, again when the
        transaction collides.
        """
        if not queue_keys:
            return None
        return await self._call(
            datastore_tasks.dispatch_next,
            self._client,
            queue_keys,
            now,
            assign,
            record,
            self._claims,
        )

    async def queues_with_work(self, queue_keys: Sequence[str], now: float) -> set[str]:
        """Returns the keys of `queue_keys` whose queue holds a candidate of claim_next.

        One small query per queue, run side by side in the store's threads.
        """
        keys = sorted(set(queue_keys))
        found = await asyncio.gather(
            *(self._call(datastore_tasks.has_heads, self._client, key, now) for key in keys)
        )
        return {key for key, has_work in zip(keys, found, strict=True) if has_work}

    async def count_queued(self, queue_key: str, now: float) -> int:
        """Counts the tasks of a queue that claim_next could hand out at `now`."""
        return await self._call(task_queries.count_queued, self._client, queue_key, now)

    async def queue_position(self, result: TaskResult) -> int:
        """Counts the tasks ahead of `result` in its queue; 0 when it is not queued."""
        if not result.is_dispatchable:
            return 0
        return await self._call(task_queries.queue_position, self._client, result)

    async def find_reusable(
        self, properties_hash: str, completed_after: float
    ) -> TaskResult | None:
        """One query from the newest end of the (reusable_hash, completed_ts) index."""
        if not properties_hash:
            return None
        return await self._call(
            task_queries.find_reusable, self._client, properties_hash, completed_after
        )

    async def list_tasks(self, query: TaskQuery) -> Page[TaskResult]:
        """Lists tasks newest first: one query per state asked for, merged."""
        return await self._call(task_queries.list_tasks, self._client, query)

    async def count_tasks(self, query: TaskQuery, cap: int | None = None) -> dict[TaskState, int]:
        """Counts per state: one keys-only query each (task_queries.count_tasks)."""
        return await self._call(task_queries.count_tasks, self._client, query, cap)

    async def any_failed(self, query: TaskQuery) -> bool:
        """One look at the `failed` index, then older results read (task_queries.any_failed)."""
        since = await self._failures_indexed_since()
        return await self._call(task_queries.any_failed, self._client, query, since)

    async def _failures_indexed_since(self) -> str:
        """Since when every failure is indexed: read (or recorded) once per store."""
        if self._failures_since is None:
            self._failures_since = await self._call(
                task_queries.failures_indexed_since, self._client, self._clock.now()
            )
        return self._failures_since

    async def list_due(self, now: float, limit: int) -> list[TaskResult]:
        """Returns active tasks with a deadline at or before `now`, earliest first."""
        # The sweeper calls this every second: the time to purge expired poll
        # replies, off the polls' path, every REPLY_PURGE_SECS.
        if not 0 <= self._clock.now() - self._replies_purged_ts < REPLY_PURGE_SECS:
            self._replies_purged_ts = self._clock.now()
            await self._call(datastore_bots.purge_replies, self._client, self._replies_purged_ts)
        return await self._call(task_queries.list_due, self._client, now, limit)

    # Structured results.

    async def add_report(self, task_id: str, report: TaskReport, key: str = "") -> None:
        """Appends a report's items; a repeated non-empty `key` is ignored."""
        await self._call(datastore_reports.add, self._client, task_id, report, key)

    async def get_report(self, task_id: str) -> TaskReport:
        """Returns every item reported for the task, in the order reported."""
        return await self._call(datastore_reports.get, self._client, task_id)

    # Output.

    async def write_output(self, run_id: str, offset: int, data: bytes) -> None:
        """Overlays the chunks `data` touches, a transaction per group of chunks."""
        rules.check_output_write(offset)
        if data:
            await self._call(datastore_output.write, self._client, run_id, offset, bytes(data))

    async def read_output(self, run_id: str, offset: int = 0, length: int = -1) -> bytes:
        """Reads output; holes read as zero bytes; length -1 reads to the end."""
        rules.check_output_read(offset, length)
        return await self._call(datastore_output.read, self._client, run_id, offset, length)

    async def output_size(self, run_id: str) -> int:
        """Returns the output's size: the end of the furthest write."""
        return await self._call(datastore_output.size, self._client, run_id)

    # Signing keys.

    async def list_signing_keys(self, purpose: str) -> list[SigningKey]:
        """Returns the stored keys of `purpose`, oldest `active_ts` first."""
        return await self._call(datastore_keys.list_keys, self._client, purpose)

    async def add_signing_key(self, key: SigningKey, *, after: str) -> SigningKey:
        """Adds `key` if the newest key of its purpose is `after`; returns the newest key."""
        return await self._call(datastore_keys.add_key, self._client, key, after)

    # API tokens.

    async def add_api_token(self, token: ApiToken) -> None:
        """Stores a new token. Raises Conflict if a token with its `token_id` exists."""
        await self._call(datastore_tokens.add, self._client, token)

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        """Returns the token with this ID, revoked or not, or None."""
        return await self._call(datastore_tokens.get, self._client, token_id)

    async def list_api_tokens(self) -> list[ApiToken]:
        """Returns every token, oldest first."""
        return await self._call(datastore_tokens.list_all, self._client)

    async def revoke_api_token(self, token_id: str, now: float) -> ApiToken | None:
        """Marks the token revoked at `now` unless it is already; None if unknown."""
        return await self._call(datastore_tokens.revoke, self._client, token_id, now)
