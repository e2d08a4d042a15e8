"""Bots, bot events and poll replies in the SQLite store (see server/store/sqlite.py).

A bot's row keeps the answer of its last dispatching poll (reply_uuid,
reply_expires_ts, reply) for replay: a bot retries only its latest poll,
and the dispatch writes the row anyway, so the answer costs no page of
its own and no purge.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from server import jsonio
from server.model import Bot, BotEvent, BotQuery, Page, evolve
from server.store import codec
from server.store.base import TOUCH_BATCH_SECS, PollReply
from server.store.cursor import decode as decode_cursor
from server.store.cursor import encode as encode_cursor
from server.store.rules import check_limit, page
from server.store.sqlite_sql import marks
from server.store.sqlite_sql import where as where_clause


class SeenBots:
    """Last-seen times and reported states of idle bots' polls, waiting to be written.

    An idle bot polls about once a long-poll hold (40 s), reporting a state
    that changes a little each time (its uptime, its sleep streak); a
    commit per poll was most of what a held poll cost the store. So these
    are written together, in one transaction, once the oldest has waited
    TOUCH_BATCH_SECS (Store.touch_bot), and dropped when the bot's whole
    record is written.
    """

    def __init__(self) -> None:
        # bot ID -> (last-seen time, state, the state as JSON text)
        self._seen: dict[str, tuple[float, dict[str, Any], str]] = {}
        self._oldest = 0.0

    def add(self, bot: Bot) -> None:
        """Holds the bot's last-seen time and state (the latest time wins).

        Raises ValueError for a state that is not strict JSON (a NaN in it).
        """
        held = self._seen.get(bot.bot_id)
        if held is not None and held[0] > bot.last_seen_ts:
            return
        state = codec.dumps_json_value(bot.state)
        if not self._seen:
            self._oldest = time.monotonic()
        self._seen[bot.bot_id] = (bot.last_seen_ts, bot.state, state)

    def overlay(self, bot: Bot) -> Bot:
        """`bot` with the time and state held for it, if they are newer."""
        held = self._seen.get(bot.bot_id)
        if held is None or held[0] <= bot.last_seen_ts:
            return bot
        return evolve(bot, last_seen_ts=held[0], state=held[1])

    def discard(self, bot_id: str) -> None:
        """Forgets what is held for a bot whose whole record is being written."""
        self._seen.pop(bot_id, None)

    @staticmethod
    def wait_secs() -> float:
        """How long the oldest held touch may wait before it is written."""
        return TOUCH_BATCH_SECS

    def is_due(self) -> bool:
        """True when the oldest held poll has waited TOUCH_BATCH_SECS."""
        return bool(self._seen) and time.monotonic() - self._oldest >= TOUCH_BATCH_SECS

    def restore(self, seen: dict[str, tuple[float, dict[str, Any], str]]) -> None:
        """Holds again what `take` gave and could not be written (newer entries win)."""
        if seen and not self._seen:
            self._oldest = time.monotonic()
        for bot_id, entry in seen.items():
            held = self._seen.get(bot_id)
            if held is None or held[0] < entry[0]:
                self._seen[bot_id] = entry

    def take(self) -> dict[str, tuple[float, dict[str, Any], str]]:
        """Everything held, which is no longer held."""
        seen, self._seen = self._seen, {}
        return seen


def write_seen(db: sqlite3.Connection, seen: dict[str, tuple[float, dict[str, Any], str]]) -> None:
    """Writes last-seen times and states inside the caller's write transaction.

    Only those two fields of each record change (json_set on the stored
    JSON), so a change of anything else by another connection meanwhile
    is kept; a time older than the stored one is ignored. A record whose
    JSON SQLite cannot read (the standard library wrote a NaN in it) gets
    the new time in its column only.
    """
    db.executemany(
        "UPDATE bots SET last_seen_ts = ?, data = CASE WHEN json_valid(data) THEN json_set(data,"
        " '$.last_seen_ts', json(?), '$.state', json(?)) ELSE data END"
        " WHERE bot_id = ? AND last_seen_ts < ?",
        [
            (ts, jsonio.dumps(float(ts)), state, bot_id, ts)
            for bot_id, (ts, _, state) in seen.items()
        ],
    )


def write_bot(
    db: sqlite3.Connection, bot: Bot, old: Bot | None = None, reply: PollReply | None = None
) -> None:
    """Creates or replaces the bot record, inside the caller's write transaction.

    `old` is the stored record if the caller has it (it spares a read).
    With `reply`, the row keeps that poll's answer in place of the one it
    kept (a dispatch's); without, the kept answer stays as it is.
    """
    dims = jsonio.dumps_sorted(bot.dimensions)
    if old is not None:
        same_dims = old.dimensions == bot.dimensions
    else:
        row = db.execute("SELECT dimensions FROM bots WHERE bot_id = ?", (bot.bot_id,)).fetchone()
        same_dims = row is not None and row[0] == dims
    values = (
        bot.bot_id,
        bot.last_seen_ts,
        bool(bot.quarantined or bot.admin_quarantine),
        bool(bot.task_id),
        dims,
        codec.dumps(bot),
    )
    if reply is None:
        db.execute(_UPSERT_BOT, values)
    else:
        answer = (reply.request_uuid, reply.expires_ts, jsonio.dumps(reply.reply))
        db.execute(_UPSERT_BOT_WITH_REPLY, (*values, *answer))
    # Dimensions rarely change, while a bot is written on every poll.
    if not same_dims:
        db.execute("DELETE FROM bot_dimensions WHERE bot_id = ?", (bot.bot_id,))
        db.executemany(
            "INSERT OR IGNORE INTO bot_dimensions (bot_id, key, value) VALUES (?, ?, ?)",
            [(bot.bot_id, k, v) for k, vs in bot.dimensions.items() for v in vs],
        )


_BOT_COLUMNS = "bot_id, last_seen_ts, quarantined, busy, dimensions, data"
_BOT_UPDATES = (
    "last_seen_ts = excluded.last_seen_ts, quarantined = excluded.quarantined,"
    " busy = excluded.busy, dimensions = excluded.dimensions, data = excluded.data"
)
_UPSERT_BOT = (
    f"INSERT INTO bots ({_BOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    f" ON CONFLICT (bot_id) DO UPDATE SET {_BOT_UPDATES}"
)
_UPSERT_BOT_WITH_REPLY = (
    f"INSERT INTO bots ({_BOT_COLUMNS}, reply_uuid, reply_expires_ts, reply)"
    f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bot_id) DO UPDATE SET {_BOT_UPDATES},"
    " reply_uuid = excluded.reply_uuid, reply_expires_ts = excluded.reply_expires_ts,"
    " reply = excluded.reply"
)


def insert_event(db: sqlite3.Connection, event: BotEvent) -> None:
    """Appends a bot event."""
    db.execute(
        "INSERT INTO bot_events (bot_id, ts, data) VALUES (?, ?, ?)",
        (event.bot_id, event.ts, codec.dumps(event)),
    )


def read_reply_uuid(db: sqlite3.Connection, bot_id: str) -> str:
    """The request_uuid of the poll whose answer the bot's row keeps; "" for none."""
    row = db.execute("SELECT reply_uuid FROM bots WHERE bot_id = ?", (bot_id,)).fetchone()
    return "" if row is None else str(row[0])


def read_poll_reply(
    db: sqlite3.Connection, bot_id: str, request_uuid: str, now: float
) -> dict[str, Any] | None:
    """The answer the bot's row keeps for this poll, unless it expired by `now`."""
    row = db.execute(
        "SELECT reply FROM bots WHERE bot_id = ? AND reply_uuid = ? AND reply_expires_ts > ?",
        (bot_id, request_uuid, now),
    ).fetchone()
    if row is None:
        return None
    reply: dict[str, Any] = jsonio.loads(row[0])
    return reply


def select_bots(db: sqlite3.Connection, query: BotQuery) -> Page[Bot]:
    """Lists bots by ID, filtered as `query` says, paged by `query.cursor`.

    A bot matches a requested dimension when it has the key with the
    value, or with any of the values of an "a|b" alternative.
    """
    check_limit(query.limit)
    where: list[str] = []
    args: list[Any] = []
    if query.cursor:
        where.append("bot_id > ?")
        args.extend(decode_cursor("bots", query.cursor, str))
    for key, value in query.dimensions:
        values = value.split("|")
        where.append(
            "EXISTS (SELECT 1 FROM bot_dimensions d WHERE d.bot_id = bots.bot_id"
            f" AND d.key = ? AND d.value IN ({marks(values)}))"
        )
        args.extend([key, *values])
    if query.quarantined is not None:
        where.append("quarantined = ?")
        args.append(query.quarantined)
    if query.is_busy is not None:
        where.append("busy = ?")
        args.append(query.is_busy)
    if query.is_dead is not None:
        where.append("last_seen_ts < ?" if query.is_dead else "last_seen_ts >= ?")
        args.append(query.dead_before)
    rows = db.execute(
        f"SELECT bot_id, data FROM bots {where_clause(where)} ORDER BY bot_id LIMIT ?",
        (*args, query.limit + 1),
    ).fetchall()
    return page(
        rows,
        query.limit,
        lambda row: encode_cursor("bots", row[0]),
        lambda row: codec.loads(Bot, row[1]),
    )


def select_events(db: sqlite3.Connection, bot_id: str, limit: int, cursor: str) -> Page[BotEvent]:
    """Lists a bot's events, newest first (events of one time in reverse order added)."""
    check_limit(limit)
    where, args = ["bot_id = ?"], [bot_id]
    if cursor:
        where.append("(ts, id) < (?, ?)")
        args.extend(decode_cursor("bot_events", cursor, float, int))
    rows = db.execute(
        f"SELECT ts, id, data FROM bot_events {where_clause(where)}"
        " ORDER BY ts DESC, id DESC LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    return page(
        rows,
        limit,
        lambda row: encode_cursor("bot_events", row[0], row[1]),
        lambda row: codec.loads(BotEvent, row[2]),
    )
