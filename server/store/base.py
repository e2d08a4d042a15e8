"""The Store protocol: the domain operations the server persists through.

Not CRUD: each method is one domain operation with its own atomicity
contract, so every backend can do it natively (a `BEGIN IMMEDIATE`
transaction in SQLite, a transaction in Datastore). The contract below is
enforced by one test suite (tests/store/test_contract.py) run against every
backend. State that must survive a restart lives only here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from server.errors import Conflict
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

# Output is stored in chunks of this size; a write at any offset touches at
# most two chunks more than its length needs.
OUTPUT_CHUNK_SIZE = 100 * 1024
# Output past this size is dropped (Swarming keeps ~100 MiB too).
MAX_OUTPUT_SIZE = 1024 * OUTPUT_CHUNK_SIZE


# How long a store may hold the last-seen times of touch_bot before writing
# them: far below any bot death timeout (30 s at least).
TOUCH_BATCH_SECS = 1.0


class StaleWrite(Conflict):
    """The record changed since it was read."""


@dataclasses.dataclass(frozen=True)
class PollReply:
    """A poll's answer, kept for replay until `expires_ts` (see read_poll)."""

    bot_id: str
    request_uuid: str
    reply: dict[str, Any]
    expires_ts: float


@dataclasses.dataclass(frozen=True)
class Dispatch:
    """What a poll records in the transaction of the claim that gives its bot a task."""

    # The bot's new record, busy with the run (as put_bot writes it).
    bot: Bot
    # Appended to the bot's history (as add_bot_event appends it).
    event: BotEvent
    # The poll's answer, kept for a retry of the poll (read_poll) unless
    # its request_uuid is empty (the bot sent none).
    reply: PollReply


class Store(Protocol):
    """Persistent state of a Drover server."""

    async def close(self) -> None:
        """Releases the backend's resources."""
        ...

    # Bots.

    async def get_bot(self, bot_id: str) -> Bot | None:
        """Returns the bot, or None if it was never seen."""
        ...

    async def put_bot(self, bot: Bot) -> None:
        """Creates or replaces the bot record (last writer wins)."""
        ...

    async def touch_bot(self, bot: Bot) -> None:
        """Records a poll of a bot that changed only its `last_seen_ts` and `state`.

        `bot` is the stored record with those two fields new (an idle bot's
        poll: its state holds its uptime). The store may write them later,
        with other bots' in one batch, within about TOUCH_BATCH_SECS, and
        writes only them: a change of another field meanwhile (put_bot,
        here or elsewhere) is kept, and an older time than the stored one
        changes nothing. Reads through this store see them at once, other
        stores (other processes, replicas) once written. So a crash may lose
        the last second of last-seen times and states, never anything else.
        """
        ...

    async def list_bots(self, query: BotQuery) -> Page[Bot]:
        """Lists bots by ID, filtered as `query` says, paged by `query.cursor`."""
        ...

    async def add_bot_event(self, event: BotEvent) -> None:
        """Appends an event to the bot's history."""
        ...

    async def list_bot_events(self, bot_id: str, limit: int, cursor: str = "") -> Page[BotEvent]:
        """Lists a bot's events, newest first."""
        ...

    # Poll replay (PROTOCOL.md 0.2.1 T2): a retried poll gets the same answer.

    async def read_poll(
        self, bot_id: str, request_uuid: str
    ) -> tuple[dict[str, Any] | None, Bot | None]:
        """What a poll reads first: the answer kept for it, and the bot (as get_bot returns it).

        The answer is the one dispatch_next kept for this poll (same bot and
        request_uuid), or None once it expired or when `request_uuid` is
        empty. A bot retries only its latest poll, so a backend may keep just
        the answer of a bot's last dispatch: a newer one may replace it.
        Both are read together (one lookup of the two where the backend
        allows it), as every poll needs both.
        """
        ...

    # Queues.

    async def ensure_queue(self, queue: Queue) -> bool:
        """Records a queue; returns True if it was not known before."""
        ...

    async def list_queues(self) -> list[Queue]:
        """Returns every known queue."""
        ...

    # Tasks.

    async def create_task(
        self, request: TaskRequest, result: TaskResult, dispatch: Dispatch | None = None
    ) -> tuple[TaskResult, bool]:
        """Stores a new task atomically: request, result and its place in its queue.

        If `request.request_uuid` is set and a task with the same uuid exists,
        stores nothing and returns (existing result, False); else (result, True).
        Raises Conflict, storing nothing, when a task with this ID exists.

        With `dispatch`, the task is handed to a held poll as it is created:
        `result` is its first run, reserved for the bot, and the dispatch is
        written in the same transaction, as dispatch_next writes it.
        """
        ...

    async def get_request(self, task_id: str) -> TaskRequest | None:
        """Returns the request of a task by summary ID."""
        ...

    async def get_result(self, task_id: str) -> TaskResult | None:
        """Returns the result of a task by summary ID."""
        ...

    async def peek_result(self, task_id: str) -> TaskResult | None:
        """The result as this store last saw it, which another writer may have changed since.

        For a plan that update_result confirms (it refuses a stale version):
        a backend that keeps records in memory answers from there without
        asking whether the file changed. Anything decided from it without a
        compare-and-set (a refusal) must be decided again on get_result.
        """
        ...

    async def update_result(self, result: TaskResult) -> TaskResult:
        """Compare-and-set: writes `result` if the stored version is `result.version`.

        Returns the stored record (version bumped). Raises StaleWrite when the
        stored version differs, TaskNotFound when there is no such task. The
        task's place in its queue follows the new record: it is queued iff
        `result.is_dispatchable`.
        """
        ...

    async def claim_next(
        self,
        queue_keys: Sequence[str],
        now: float,
        assign: Callable[[TaskResult], TaskResult | None],
    ) -> TaskResult | None:
        """Atomically hands the best dispatchable task of the given queues to a bot.

        Candidates are the queued tasks of `queue_keys` whose `expiration_ts`
        is after `now`, best first: lowest priority number, then oldest
        `created_ts`, then task ID. For each, `assign` gets the stored record
        and returns the record to store (or None to skip it); the first one
        returned is written as by `update_result` and returned. Two concurrent
        calls never get the same task.
        """
        ...

    async def dispatch_next(
        self,
        queue_keys: Sequence[str],
        now: float,
        assign: Callable[[TaskResult], TaskResult | None],
        record: Callable[[TaskResult, TaskRequest], Dispatch],
    ) -> tuple[TaskResult, Dispatch] | None:
        """Claims as claim_next does, and records the dispatch in the same transaction.

        For the task claimed, `record` gets the stored result and the task's
        request and says what else the poll writes: the bot's record, a bot
        event and the poll's answer, stored as put_bot and add_bot_event
        store them, and the answer for read_poll. The claim and those writes happen
        together or not at all, so a crash never leaves a claimed task with
        no answer to replay, or the bot recorded busy with a task it never
        got. `record` must be a pure function: a backend may call it more
        than once. Returns (stored result, what `record` returned), or None
        when no task was claimed (then nothing is written).
        """
        ...

    async def queues_with_work(self, queue_keys: Sequence[str], now: float) -> set[str]:
        """Returns the keys of `queue_keys` whose queue holds a candidate of claim_next.

        A candidate is a queued task whose `expiration_ts` is after `now`. A
        replica asks this for the queues its held polls wait on, so that a
        task another replica queued wakes them (server/scheduler/replicas.py).
        """
        ...

    async def count_queued(self, queue_key: str, now: float) -> int:
        """Counts the tasks of a queue that claim_next could hand out at `now`.

        These are exactly the candidates of claim_next and queues_with_work:
        the queued tasks of `queue_key` (`is_dispatchable`, so neither
        paused, claimed nor ended) whose `expiration_ts` is after `now`.
        Queued tasks past their expiration that the sweeper has not ended
        yet do not count (unlike in queue_position); neither does any task
        of another queue. The cost grows with the answer, not with other
        queues. An unknown queue counts 0.
        """
        ...

    async def queue_position(self, result: TaskResult) -> int:
        """Counts the tasks ahead of `result` in its queue; 0 when it is not queued.

        A task is not queued unless `result.is_dispatchable`. Ahead are the
        queued tasks of `result.queue_key` that come strictly before it in
        claim order: lower priority number, then older `created_ts`, then
        lower task ID. Queued tasks past their expiration that the sweeper
        has not ended yet still count.
        """
        ...

    async def find_reusable(
        self, properties_hash: str, completed_after: float
    ) -> TaskResult | None:
        """Returns the result a new idempotent task may reuse (dedup), or None.

        Candidates are tasks whose stored result is COMPLETED with `failure`
        False, whose `properties_hash` equals the given non-empty hash, which
        are not copies themselves (`deduped_from` empty: a dedup always
        points at an original run) and whose `completed_ts` is at or after
        `completed_after`. The most recently completed one is returned; ties
        go to the higher task ID. An empty hash matches nothing.
        """
        ...

    async def list_tasks(self, query: TaskQuery) -> Page[TaskResult]:
        """Lists tasks newest first (created_ts, then task ID), filtered as `query` says.

        The created range is `created_after <= created_ts < created_before`.
        """
        ...

    async def count_tasks(self, query: TaskQuery, cap: int | None = None) -> dict[TaskState, int]:
        """How many tasks `query` matches in each state it asks for (every state if none).

        Filters as list_tasks does; `limit` and `cursor` are ignored. With
        `cap`, a state's count stops there: a state at `cap` has at least
        that many. Counts from the indexes, never decoding a record.
        """
        ...

    async def any_failed(self, query: TaskQuery) -> bool:
        """Whether a COMPLETED task that `query` matches (as list_tasks) has `failure` set."""
        ...

    async def list_due(self, now: float, limit: int) -> list[TaskResult]:
        """Returns tasks with a deadline at or before `now`, earliest deadline first.

        A deadline is the expiration of a pending task's current slice, the
        `dead_after_ts` of a running task, an unconfirmed reservation's
        `reserved_until`, or, for an ended task that still has
        `children_to_stop`, the time it ended (server/store/rules.py due_ts).
        """
        ...

    # Structured results (unit, lint, work messages).

    async def add_report(self, task_id: str, report: TaskReport, key: str = "") -> None:
        """Appends a report's items to the task's; earlier items stay, in order.

        A non-empty `key` makes the call idempotent: a second report with the
        same key for the same task is ignored (a bot resending an update).
        """
        ...

    async def get_report(self, task_id: str) -> TaskReport:
        """Returns every item reported for the task, in the order reported."""
        ...

    # Output, addressed by run ID and byte offset.

    async def write_output(self, run_id: str, offset: int, data: bytes) -> None:
        """Writes `data` at `offset`; writing the same bytes again changes nothing.

        Bytes past MAX_OUTPUT_SIZE are dropped, but the size still grows to
        the cap. An empty write changes nothing.
        """
        ...

    async def read_output(self, run_id: str, offset: int = 0, length: int = -1) -> bytes:
        """Reads output; holes read as zero bytes; length -1 reads to the end."""
        ...

    async def output_size(self, run_id: str) -> int:
        """Returns the output's size: the end of the furthest write."""
        ...

    # Signing keys of minted tokens (server/auth/keyring.py), shared by replicas.

    async def list_signing_keys(self, purpose: str) -> list[SigningKey]:
        """Returns the stored keys of `purpose`, oldest `active_ts` first (ties by key ID)."""
        ...

    async def add_signing_key(self, key: SigningKey, *, after: str) -> SigningKey:
        """Adds `key` as the newest key of its purpose, unless another writer got there first.

        Compare-and-set on the newest key: `key` is stored only if the stored
        key of `key.purpose` with the latest `active_ts` is the one named
        `after` ("" when the caller saw none), or if none is stored. Returns the newest key after
        the call: `key` when it was stored, else the one that is newest now
        (so two replicas rotating at once end up with one new key). Keys of
        the purpose whose `expires_ts` is before `key.created_ts` are deleted
        in the same operation. A key ID already stored is never replaced.
        """
        ...

    # API tokens (server/auth/tokens.py), kept by digest: a stored token cannot be used.

    async def add_api_token(self, token: ApiToken) -> None:
        """Stores a new token. Raises Conflict if a token with its `token_id` exists."""
        ...

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        """Returns the token with this ID, revoked or not, or None."""
        ...

    async def list_api_tokens(self) -> list[ApiToken]:
        """Returns every token, revoked ones included, oldest `created_ts` first (ties by ID)."""
        ...

    async def revoke_api_token(self, token_id: str, now: float) -> ApiToken | None:
        """Marks the token revoked at `now`; returns the stored record, None if unknown.

        Atomic and idempotent: revoking a revoked token keeps its first `revoked_ts`.
        """
        ...
