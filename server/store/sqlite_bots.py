"""Bots and bot events in the SQLite store (see server/store/sqlite.py)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from server.model import Bot, BotEvent, BotQuery, Page
from server.store import codec
from server.store.cursor import decode as decode_cursor
from server.store.cursor import encode as encode_cursor
from server.store.rules import check_limit, page
from server.store.sqlite_sql import marks
from server.store.sqlite_sql import where as where_clause


def write_bot(db: sqlite3.Connection, bot: Bot) -> None:
    """Creates or replaces the bot record, inside the caller's write transaction."""
    dims = json.dumps(bot.dimensions, sort_keys=True, separators=(",", ":"))
    old = db.execute("SELECT dimensions FROM bots WHERE bot_id = ?", (bot.bot_id,))
    row = old.fetchone()
    db.execute(
        "INSERT INTO bots (bot_id, last_seen_ts, quarantined, busy, dimensions, data)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bot_id) DO UPDATE SET"
        " last_seen_ts = excluded.last_seen_ts, quarantined = excluded.quarantined,"
        " busy = excluded.busy, dimensions = excluded.dimensions, data = excluded.data",
        (
            bot.bot_id,
            bot.last_seen_ts,
            bool(bot.quarantined or bot.admin_quarantine),
            bool(bot.task_id),
            dims,
            codec.dumps(bot),
        ),
    )
    # Dimensions rarely change, while a bot is written on every poll.
    if row is None or row[0] != dims:
        db.execute("DELETE FROM bot_dimensions WHERE bot_id = ?", (bot.bot_id,))
        db.executemany(
            "INSERT OR IGNORE INTO bot_dimensions (bot_id, key, value) VALUES (?, ?, ?)",
            [(bot.bot_id, k, v) for k, vs in bot.dimensions.items() for v in vs],
        )


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
