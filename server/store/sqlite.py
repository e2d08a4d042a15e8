"""The embedded Store backend: one SQLite file in the state directory.

Implements server.store.base.Store for a single server process. The schema
and its migrations live in sqlite_schema; task results and output have
helpers of their own (sqlite_results, sqlite_output), and the operations of
a bot's poll (bots, poll replies, claims) are in sqlite_polls. Records are kept as
JSON made by server.store.codec, next to copies of the columns queries use.

Threading: every call but a count of tasks runs directly on the event loop
thread, on the store's one connection. With WAL a call's SQLite work takes
tens of microseconds, less than handing it to a thread pool would cost, and
it keeps transactions simple: no call awaits while a transaction is open,
so the calls of one store never interleave. The consequence is that a slow
call stalls the whole server: a write waiting for another process's write
lock blocks the loop for up to BUSY_TIMEOUT_MS (then fails with
Unavailable); reading a large output copies it on the loop. WAL
checkpoints, which sync the file, run in a thread of their own
(sqlite_checkpoint), and so do counts of tasks, which read as many index
entries as they count (sqlite_reader). Decoded records are cached
(sqlite_cache), with `PRAGMA data_version` telling when another connection
changed the file. Other processes may open the same file (an admin command,
a test) and claims stay exclusive across them, but a fleet that needs
several server processes should use the Datastore backend."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence

from server import errors
from server.clock import Clock, SystemClock
from server.model import (
    ApiToken,
    Page,
    Queue,
    SigningKey,
    TaskQuery,
    TaskReport,
    TaskRequest,
    TaskResult,
    TaskState,
    evolve,
    merge_reports,
)
from server.store import (
    codec,
    rules,
    sqlite_bots,
    sqlite_keys,
    sqlite_output,
    sqlite_schema,
    sqlite_task_queries,
    sqlite_tokens,
)
from server.store.base import Dispatch
from server.store.sqlite_cache import RecordCache
from server.store.sqlite_checkpoint import Checkpointer
from server.store.sqlite_polls import PollRecords
from server.store.sqlite_reader import Reader
from server.store.sqlite_results import (
    OLD_COLUMNS,
    count_queued,
    find_reusable,
    queue_heads,
    queue_position,
    store_result,
)


class SqliteStore(PollRecords):
    """A Store in one SQLite file; see the module docstring for its threading."""

    def __init__(
        self,
        db: sqlite3.Connection,
        clock: Clock,
        checkpointer: Checkpointer | None = None,
        reader: Reader | None = None,
    ) -> None:
        """Wraps an open, migrated connection; use `open` instead."""
        self._db = db
        self._clock = clock
        self._cache = RecordCache(db)
        self._checkpointer = checkpointer
        self._reader = reader
        self._seen = sqlite_bots.SeenBots()
        self._touch_timer = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, clock: Clock | None = None) -> SqliteStore:
        """Opens (creating or migrating) the database at `path`.

        `clock` only decides when stored poll replies count as expired; pass
        the server's clock so they expire on the same timeline they were
        given. Raises SchemaTooNew for a database of a newer server.
        """
        db = sqlite_schema.connect(path)
        return cls(db, clock or SystemClock(), Checkpointer.start(db, path), Reader(path))

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection, for diagnostics and SQLite-specific tests."""
        return self._db

    async def close(self) -> None:
        """Closes the connection; closing twice is harmless."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._reader is not None:
            self._reader.close()
        if self._touch_timer is not None:
            self._touch_timer.cancel()
            self._touch_timer = None
        try:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed already
                self._write_seen()
        finally:
            self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taking the file's write lock at once."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise errors.Unavailable("the database is busy, try again") from e
            raise
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several queries see one snapshot."""
        db = self._db
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    # Queues.

    async def ensure_queue(self, queue: Queue) -> bool:
        """Records a queue; returns True if it was not known before."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO queues (key, created_ts, data) VALUES (?, ?, ?)",
            (queue.key, queue.created_ts, codec.dumps(queue)),
        )
        return cur.rowcount == 1

    async def list_queues(self) -> list[Queue]:
        """Returns every known queue, oldest first."""
        rows = self._db.execute("SELECT data FROM queues ORDER BY created_ts, key")
        return [codec.loads(Queue, data) for (data,) in rows]

    # Tasks.

    async def create_task(
        self, request: TaskRequest, result: TaskResult, dispatch: Dispatch | None = None
    ) -> tuple[TaskResult, bool]:
        """Stores a new task in one write transaction, which first looks for its request_uuid."""
        rules.check_new_task(request, result)
        with self._write() as db:
            if request.request_uuid:
                row = db.execute(
                    "SELECT r.data FROM task_requests q JOIN task_results r USING (task_id)"
                    " WHERE q.request_uuid = ?",
                    (request.request_uuid,),
                ).fetchone()
                if row is not None:
                    return codec.loads(TaskResult, row[0]), False
            try:
                db.execute(
                    "INSERT INTO task_requests (task_id, request_uuid, data) VALUES (?, ?, ?)",
                    (request.task_id, request.request_uuid, codec.dumps(request)),
                )
                store_result(db, result, None, queued=False)
            except sqlite3.IntegrityError as e:
                raise errors.Conflict(f"task {request.task_id} already exists") from e
            if dispatch is not None:
                # The bot's cached record must be the stored one (write_bot).
                self._cache.check()
                self._write_dispatch(db, dispatch)
        self._cache.requests.put(request.task_id, request)
        self._cache.results.put(result.task_id, result)
        if dispatch is not None:
            self._cache_dispatch(dispatch)
        return result, True

    async def get_request(self, task_id: str) -> TaskRequest | None:
        """Returns the request of a task by summary ID (a request never changes: cached)."""
        return self._request(self._db, task_id)

    def _request(self, db: sqlite3.Connection, task_id: str) -> TaskRequest | None:
        request = self._cache.requests.get(task_id)
        if request is None:
            row = db.execute("SELECT data FROM task_requests WHERE task_id = ?", (task_id,))
            found = row.fetchone()
            if found is None:
                return None
            request = codec.loads(TaskRequest, found[0])
            self._cache.requests.put(task_id, request)
        return request

    async def get_result(self, task_id: str) -> TaskResult | None:
        """Returns the result of a task by summary ID."""
        self._cache.check()
        result = self._cache.results.get(task_id)
        if result is None:
            row = self._db.execute(
                "SELECT data FROM task_results WHERE task_id = ?", (task_id,)
            ).fetchone()
            if row is None:
                return None
            result = codec.loads(TaskResult, row[0])
            self._cache.results.put(task_id, result)
        return result

    async def peek_result(self, task_id: str) -> TaskResult | None:
        """The cached result, not checked against other connections' commits; else get_result."""
        return self._cache.results.get(task_id) or await self.get_result(task_id)

    async def update_result(self, result: TaskResult) -> TaskResult:
        """Compare-and-set on `version` under the write lock, with the derived rows."""
        with self._write() as db:
            row = db.execute(
                f"SELECT r.version, p.task_id IS NOT NULL, {OLD_COLUMNS} FROM task_results r"
                " LEFT JOIN pending p USING (task_id) WHERE r.task_id = ?",
                (result.task_id,),
            ).fetchone()
            if row is None:
                raise errors.TaskNotFound(result.task_id)
            version = rules.next_version(result.task_id, row[0], result.version)
            stored = evolve(result, version=version)
            store_result(db, stored, row[2:], queued=bool(row[1]))
        self._cache.results.put(stored.task_id, stored)
        return stored

    async def queues_with_work(self, queue_keys: Sequence[str], now: float) -> set[str]:
        """Returns the keys of `queue_keys` whose queue holds a candidate of claim_next."""
        return {key for key in set(queue_keys) if next(queue_heads(self._db, key, now), None)}

    async def count_queued(self, queue_key: str, now: float) -> int:
        """Counts the tasks of a queue that claim_next could hand out at `now`."""
        return count_queued(self._db, queue_key, now)

    async def queue_position(self, result: TaskResult) -> int:
        """Counts the tasks ahead of `result` in its queue; 0 when it is not queued."""
        if not result.is_dispatchable:
            return 0
        entry = (result.priority, result.created_ts, result.task_id)
        return queue_position(self._db, entry, result.queue_key)

    async def find_reusable(
        self, properties_hash: str, completed_after: float
    ) -> TaskResult | None:
        """One seek from the newest end of the task_results_by_reusable index."""
        if not properties_hash:
            return None
        return find_reusable(self._db, properties_hash, completed_after)

    async def list_tasks(self, query: TaskQuery) -> Page[TaskResult]:
        """Lists tasks newest first with one query (sqlite_task_queries)."""
        return sqlite_task_queries.list_tasks(self._db, query)

    async def count_tasks(self, query: TaskQuery, cap: int | None = None) -> dict[TaskState, int]:
        """Counts per state from the (state, created_ts) index, off the loop (sqlite_reader)."""
        if self._reader is None:
            return sqlite_task_queries.count_tasks(self._db, query, cap)
        return await self._reader.run(sqlite_task_queries.count_tasks, query, cap)

    async def any_failed(self, query: TaskQuery) -> bool:
        """One look in the partial index of failed results."""
        return sqlite_task_queries.any_failed(self._db, query)

    async def list_due(self, now: float, limit: int) -> list[TaskResult]:
        """Returns tasks whose deadline (rules.due_ts) is at or before `now`, earliest first."""
        # The sweeper calls this every second: the time to write held last-seen times.
        if self._seen.is_due():
            self._write_seen()
        rows = self._db.execute(
            "SELECT data FROM task_results WHERE due_ts <= ? ORDER BY due_ts, task_id LIMIT ?",
            # A negative LIMIT would mean no limit to SQLite.
            (now, max(limit, 0)),
        )
        return [codec.loads(TaskResult, data) for (data,) in rows]

    # Structured results.

    async def add_report(self, task_id: str, report: TaskReport, key: str = "") -> None:
        """Appends a report's items; a repeated non-empty `key` is ignored."""
        self._db.execute(
            "INSERT OR IGNORE INTO task_reports (task_id, key, data) VALUES (?, ?, ?)",
            (task_id, key or None, codec.dumps(report)),
        )

    async def get_report(self, task_id: str) -> TaskReport:
        """Returns every item reported for the task, in the order reported."""
        rows = self._db.execute(
            "SELECT data FROM task_reports WHERE task_id = ? ORDER BY seq", (task_id,)
        ).fetchall()
        return merge_reports(codec.loads(TaskReport, data) for (data,) in rows)

    # Output.

    async def write_output(self, run_id: str, offset: int, data: bytes) -> None:
        """Overlays the chunks `data` touches and grows the size, in one write."""
        rules.check_output_write(offset)
        if data:
            with self._write() as db:
                sqlite_output.write(db, run_id, offset, data)

    async def read_output(self, run_id: str, offset: int = 0, length: int = -1) -> bytes:
        """Reads output; holes read as zero bytes; length -1 reads to the end."""
        rules.check_output_read(offset, length)
        with self._read() as db:
            return sqlite_output.read(db, run_id, offset, length)

    async def output_size(self, run_id: str) -> int:
        """Returns the output's size: the end of the furthest write."""
        return sqlite_output.size(self._db, run_id)

    # Signing keys.

    async def list_signing_keys(self, purpose: str) -> list[SigningKey]:
        """Returns the stored keys of `purpose`, oldest `active_ts` first."""
        return sqlite_keys.select(self._db, purpose)

    async def add_signing_key(self, key: SigningKey, *, after: str) -> SigningKey:
        """Adds `key` if the newest key of its purpose is `after`; returns the newest key."""
        with self._write() as db:
            return sqlite_keys.add(db, key, after)

    # API tokens.

    async def add_api_token(self, token: ApiToken) -> None:
        """Stores a new token. Raises Conflict if a token with its `token_id` exists."""
        with self._write() as db:
            sqlite_tokens.insert(db, token)

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        """Returns the token with this ID, revoked or not, or None."""
        return sqlite_tokens.get(self._db, token_id)

    async def list_api_tokens(self) -> list[ApiToken]:
        """Returns every token, oldest first."""
        return sqlite_tokens.select_all(self._db)

    async def revoke_api_token(self, token_id: str, now: float) -> ApiToken | None:
        """Marks the token revoked at `now` unless it is already; None if unknown."""
        with self._write() as db:
            return sqlite_tokens.revoke(db, token_id, now)
