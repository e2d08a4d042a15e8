"""The SQLite backend's schema: connection settings and ordered migrations.

`PRAGMA user_version` records how many steps of MIGRATIONS a database has
applied. Opening an older database applies the missing steps in one
transaction (all or nothing); opening a database written by a newer server is
refused, since this one would not know what its columns mean. Steps are only
ever appended: editing a released step would leave existing databases behind.

Every record is kept whole as JSON (server.store.codec) in a `data` column;
the other columns are copies of the fields that queries filter or sort on.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence

from server.errors import DroverError

# How long a write waits for another connection's write lock before failing.
# Calls run on the event loop thread, so while waiting the whole server
# stalls; in normal operation one process owns the file and never waits.
BUSY_TIMEOUT_MS = 5000

# One step per schema version; step N (0-based) takes a database to version N+1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Bots, with copies of the fields list_bots filters on; `dimensions`
        # is canonical JSON so an unchanged bot skips rewriting bot_dimensions.
        """CREATE TABLE bots (
            bot_id TEXT PRIMARY KEY,
            last_seen_ts REAL NOT NULL,
            quarantined INTEGER NOT NULL,
            busy INTEGER NOT NULL,
            dimensions TEXT NOT NULL,
            data TEXT NOT NULL)""",
        """CREATE TABLE bot_dimensions (
            bot_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (bot_id, key, value)) WITHOUT ROWID""",
        """CREATE TABLE bot_events (
            id INTEGER PRIMARY KEY,
            bot_id TEXT NOT NULL,
            ts REAL NOT NULL,
            data TEXT NOT NULL)""",
        "CREATE INDEX bot_events_by_bot ON bot_events (bot_id, ts, id)",
        """CREATE TABLE poll_replies (
            bot_id TEXT NOT NULL,
            request_uuid TEXT NOT NULL,
            expires_ts REAL NOT NULL,
            reply TEXT NOT NULL,
            PRIMARY KEY (bot_id, request_uuid))""",
        "CREATE INDEX poll_replies_by_expiry ON poll_replies (expires_ts)",
        """CREATE TABLE queues (
            key TEXT PRIMARY KEY,
            created_ts REAL NOT NULL,
            data TEXT NOT NULL)""",
        """CREATE TABLE task_requests (
            task_id TEXT PRIMARY KEY,
            request_uuid TEXT NOT NULL,
            data TEXT NOT NULL)""",
        # Most tasks have no request_uuid; only the ones that do must be unique.
        """CREATE UNIQUE INDEX task_requests_by_uuid ON task_requests (request_uuid)
            WHERE request_uuid != ''""",
        # `due_ts` is the task's next deadline (list_due), NULL once it is final;
        # `tags` is the JSON of the tags last written to task_tags.
        """CREATE TABLE task_results (
            task_id TEXT PRIMARY KEY,
            state INTEGER NOT NULL,
            created_ts REAL NOT NULL,
            bot_id TEXT NOT NULL,
            due_ts REAL,
            tags TEXT NOT NULL,
            version INTEGER NOT NULL,
            data TEXT NOT NULL)""",
        "CREATE INDEX task_results_by_created ON task_results (created_ts, task_id)",
        "CREATE INDEX task_results_by_state ON task_results (state, created_ts, task_id)",
        "CREATE INDEX task_results_by_bot ON task_results (bot_id, created_ts, task_id)",
        """CREATE INDEX task_results_by_due ON task_results (due_ts, task_id)
            WHERE due_ts IS NOT NULL""",
        """CREATE TABLE task_tags (
            tag TEXT NOT NULL,
            task_id TEXT NOT NULL,
            PRIMARY KEY (tag, task_id)) WITHOUT ROWID""",
        # The queues: a row exists iff the task's result is dispatchable.
        """CREATE TABLE pending (
            task_id TEXT PRIMARY KEY,
            queue_key TEXT NOT NULL,
            priority INTEGER NOT NULL,
            created_ts REAL NOT NULL,
            expiration_ts REAL NOT NULL) WITHOUT ROWID""",
        # claim_next reads a queue's head in this order; expiration_ts rides
        # along so skipping expired heads never touches the table.
        """CREATE INDEX pending_by_queue
            ON pending (queue_key, priority, created_ts, task_id, expiration_ts)""",
        "CREATE TABLE outputs (run_id TEXT PRIMARY KEY, size INTEGER NOT NULL)",
        # A rowid table: SQLite advises against WITHOUT ROWID for large rows.
        """CREATE TABLE output_chunks (
            run_id TEXT NOT NULL,
            chunk_index INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, chunk_index))""",
    ),
    (
        # Dedup (find_reusable). `reusable_hash` is the result's
        # properties_hash while the result can serve as a dedup source
        # (COMPLETED, no failure, not itself a copy), NULL otherwise, so the
        # index holds only real candidates, newest last.
        "ALTER TABLE task_results ADD COLUMN completed_ts REAL",
        "ALTER TABLE task_results ADD COLUMN reusable_hash TEXT",
        "UPDATE task_results SET completed_ts = json_extract(data, '$.completed_ts')",
        # The same rule as sqlite_results.reusable_hash; booleans are JSON, 0 is false.
        """UPDATE task_results SET reusable_hash = json_extract(data, '$.properties_hash')
            WHERE state = 112 /* COMPLETED */ AND json_extract(data, '$.failure') = 0
            AND json_extract(data, '$.deduped_from') = ''
            AND json_extract(data, '$.properties_hash') != ''
            AND json_extract(data, '$.completed_ts') IS NOT NULL""",
        """CREATE INDEX task_results_by_reusable
            ON task_results (reusable_hash, completed_ts, task_id)
            WHERE reusable_hash IS NOT NULL""",
    ),
    (
        # Structured results, one row per report, in the order reported.
        """CREATE TABLE task_reports (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            task_id TEXT NOT NULL,
            key TEXT,
            data TEXT NOT NULL)""",
        "CREATE INDEX task_reports_by_task ON task_reports (task_id, seq)",
        # NULL keys never collide: unkeyed reports always append.
        "CREATE UNIQUE INDEX task_reports_by_key ON task_reports (task_id, key)",
    ),
    (
        # Keys that sign minted tokens (server/store/sqlite_keys.py).
        """CREATE TABLE signing_keys (
            purpose TEXT NOT NULL,
            key_id TEXT NOT NULL,
            active_ts REAL NOT NULL,
            expires_ts REAL NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (purpose, key_id))""",
        "CREATE INDEX signing_keys_by_active ON signing_keys (purpose, active_ts, key_id)",
    ),
    (
        # API tokens by their public ID (server/store/sqlite_tokens.py).
        """CREATE TABLE api_tokens (
            token_id TEXT PRIMARY KEY,
            created_ts REAL NOT NULL,
            data TEXT NOT NULL)""",
    ),
    (
        # A bot's row keeps the answer of its last dispatching poll, which
        # the dispatch writes anyway (server/store/sqlite_bots.py): the
        # poll_replies table, its two indexes and their purge go. The newest
        # answer of each bot comes along.
        "ALTER TABLE bots ADD COLUMN reply_uuid TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE bots ADD COLUMN reply_expires_ts REAL NOT NULL DEFAULT 0",
        "ALTER TABLE bots ADD COLUMN reply TEXT NOT NULL DEFAULT ''",
        """UPDATE bots SET (reply_uuid, reply_expires_ts, reply) = (
            SELECT request_uuid, expires_ts, reply FROM poll_replies p
            WHERE p.bot_id = bots.bot_id ORDER BY expires_ts DESC LIMIT 1)
            WHERE bot_id IN (SELECT bot_id FROM poll_replies)""",
        "DROP TABLE poll_replies",
        # Only tasks a bot took are listed by bot: queued ones, which have
        # none, stay out of the index, and a dispatch adds an entry instead
        # of moving one (list_tasks says bot_id != '' to use it).
        "DROP INDEX task_results_by_bot",
        """CREATE INDEX task_results_by_bot ON task_results (bot_id, created_ts, task_id)
            WHERE bot_id != ''""",
    ),
    (
        # Whether a result failed, as a column: a summary's all_succeeded asks
        # whether any COMPLETED result of a selection failed, which the
        # partial index answers with one look (sqlite_task_queries.any_failed).
        # Records the standard library wrote (a float that is not finite,
        # server/store/codec.py) are not JSON to SQLite: their text is searched.
        "ALTER TABLE task_results ADD COLUMN failed INTEGER NOT NULL DEFAULT 0",
        """UPDATE task_results SET failed = 1 WHERE CASE WHEN json_valid(data)
            THEN json_extract(data, '$.failure') = 1
            ELSE instr(data, '"failure":true') > 0 END""",
        "CREATE INDEX task_results_failed ON task_results (state, created_ts) WHERE failed = 1",
    ),
)


class SchemaTooNew(DroverError):
    """The database was written by a newer Drover server; upgrade this one."""


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Opens the database at `path`, configured and migrated to the latest schema."""
    # Autocommit (isolation_level=None): transactions are begun explicitly,
    # so a write that must be atomic says BEGIN IMMEDIATE where it starts.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL: readers never block the writer, and a commit is an append.
        db.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL cannot corrupt the database; a power cut may lose
        # the last commits, which the bots' retries then redo.
        db.execute("PRAGMA synchronous = NORMAL")
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def user_version(db: sqlite3.Connection) -> int:
    """Returns the schema version recorded in the database."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(db: sqlite3.Connection, steps: Sequence[Sequence[str]] = MIGRATIONS) -> None:
    """Applies the steps the database lacks, all in one transaction.

    Raises SchemaTooNew when the database is past the last step.
    """
    if user_version(db) == len(steps):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated.
        current = user_version(db)
        if current > len(steps):
            raise SchemaTooNew(
                f"schema version {current}, this server knows versions up to {len(steps)}"
            )
        for step in steps[current:]:
            for statement in step:
                db.execute(statement)
        # PRAGMA takes no parameters; len() is an int, so this is safe.
        db.execute(f"PRAGMA user_version = {len(steps)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
