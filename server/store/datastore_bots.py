# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""Bots, bot events and poll replies in the Datastore backend.

A Bot entity carries, next to the whole record, the properties list_bots
filters on in Datastore: its dimensions as "[key, value]" tokens, and the
quarantined and busy flags. The rest of a BotQuery ("a|b" alternatives,
is_dead) is checked here while paging by key, so these filters read bots
that do not match: fine for an admin listing of a fleet, not for a hot path.
Functions here block: DatastoreStore runs them in its worker threads.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from server import errors, jsonio
from server.model import Bot, BotDimensions, BotEvent, BotQuery, Page, evolve
from server.store import codec
from server.store.base import PollReply
from server.store.cursor import decode as decode_cursor
from server.store.cursor import encode as encode_cursor
from server.store.datastore_client import (
    BOT,
    BOT_EVENT,
    POLL_REPLY,
    key,
    load,
    make_entity,
    query,
    retry_write,
    run_transaction,
    sortable,
)
from server.store.rules import POLL_REPLY_PURGE_BATCH, check_limit, page

# Expired poll replies deleted per transaction of purge_replies.
REPLIES_PER_PURGE = 16


def dimension_token(dim_key: str, value: str) -> str:
    """One indexed value of a bot's `dimensions`: unambiguous whatever the strings hold."""
    return json.dumps([dim_key, value], separators=(",", ":"))


def bot_entity(client: Any, bot: Bot) -> Any:
    """The Bot entity of a record."""
    indexed = {
        "dimensions": sorted(_tokens(bot.dimensions)),
        "quarantined": bool(bot.quarantined or bot.admin_quarantine),
        "busy": bool(bot.task_id),
    }
    unindexed = {"last_seen_ts": float(bot.last_seen_ts), "data": codec.dumps(bot)}
    return make_entity(client, BOT, bot.bot_id, indexed, unindexed)


def put_bot(client: Any, bot: Bot) -> None:
    """Creates or replaces the bot record (last writer wins)."""
    entity = bot_entity(client, bot)
    retry_write(lambda: client.put(entity))


def touch_bot(client: Any, bot: Bot) -> None:
    """Writes the bot's last-seen time and state into its stored record, in a transaction.

    The rest of the stored record stays as it is (another replica may have
    changed it); a time older than the stored one changes nothing.
    """
    bot_key = key(client, BOT, bot.bot_id)

    def work(tx: Any) -> None:
        entity = client.get(bot_key, transaction=tx)
        if entity is None:
            return
        stored = load(Bot, entity)
        if stored.last_seen_ts >= bot.last_seen_ts:
            return
        tx.put(bot_entity(client, evolve(stored, last_seen_ts=bot.last_seen_ts, state=bot.state)))

    run_transaction(client, work)


def get_bot(client: Any, bot_id: str) -> Bot | None:
    """Returns the bot, or None if it was never seen."""
    entity = client.get(key(client, BOT, bot_id))
    return None if entity is None else load(Bot, entity)


def list_bots(client: Any, bot_query: BotQuery) -> Page[Bot]:
    """Lists bots by ID, filtered as `bot_query` says, paged by its cursor.

    Plain dimensions and the two flags are equality filters that Datastore
    merges from built-in indexes; alternatives and liveness are checked on
    the bots it returns.
    """
    check_limit(bot_query.limit)
    filters: list[tuple[str, str, Any]] = []
    alternatives: list[set[str]] = []
    for dim_key, value in bot_query.dimensions:
        values = value.split("|")
        if len(values) == 1:
            filters.append(("dimensions", "=", dimension_token(dim_key, value)))
        else:
            alternatives.append({dimension_token(dim_key, v) for v in values})
    if bot_query.quarantined is not None:
        filters.append(("quarantined", "=", bot_query.quarantined))
    if bot_query.is_busy is not None:
        filters.append(("busy", "=", bot_query.is_busy))
    if bot_query.cursor:
        (after,) = decode_cursor("bots", bot_query.cursor, str)
        filters.append(("__key__", ">", key(client, BOT, after)))
    checked = bool(alternatives) or bot_query.is_dead is not None
    # Without checks here the first limit + 1 bots are the page; with them,
    # the query pages through as many bots as it takes.
    limit = None if checked else bot_query.limit + 1
    found: list[Any] = []
    for entity in query(client, BOT, *filters, order=["__key__"]).fetch(limit=limit):
        tokens = set(entity.get("dimensions") or ())
        if any(not (tokens & options) for options in alternatives):
            continue
        if bot_query.is_dead is not None:
            is_dead = float(entity["last_seen_ts"]) < bot_query.dead_before
            if is_dead != bot_query.is_dead:
                continue
        found.append(entity)
        if len(found) > bot_query.limit:
            break
    return page(
        found,
        bot_query.limit,
        lambda e: encode_cursor("bots", str(e.key.name)),
        lambda e: load(Bot, e),
    )


def event_entity(client: Any, event: BotEvent) -> Any:
    """A new BotEvent entity.

    The key name sorts a bot's events by time, then by when they were added
    (by this server's clock; replicas' clocks only order events of one time).
    """
    name = f"{event.bot_id}/{sortable(event.ts)}/{time.time_ns():016x}{secrets.token_hex(4)}"
    return make_entity(
        client, BOT_EVENT, name, {"bot_id": event.bot_id}, {"data": codec.dumps(event)}
    )


def add_bot_event(client: Any, event: BotEvent) -> None:
    """Appends an event to the bot's history."""
    entity = event_entity(client, event)
    retry_write(lambda: client.put(entity))


def reply_entity(client: Any, reply: PollReply) -> Any:
    """The PollReply entity that keeps the answer of the bot's last dispatch for replay.

    One per bot, named by its ID: a bot retries only its latest poll, so a
    dispatch replaces the answer of the one before and nothing piles up.
    """
    return make_entity(
        client,
        POLL_REPLY,
        reply.bot_id,
        {"expires_ts": float(reply.expires_ts)},
        {"request_uuid": reply.request_uuid, "reply": jsonio.dumps(reply.reply)},
    )


def list_bot_events(client: Any, bot_id: str, limit: int, cursor: str) -> Page[BotEvent]:
    """Lists a bot's events newest first: one query on the (bot_id, __key__ desc) index."""
    check_limit(limit)
    filters: list[tuple[str, str, Any]] = [("bot_id", "=", bot_id)]
    if cursor:
        (before,) = decode_cursor("bot_events", cursor, str)
        if not before.startswith(f"{bot_id}/"):
            raise errors.InvalidRequest(f"cursor {cursor!r} belongs to another bot's events")
        filters.append(("__key__", "<", key(client, BOT_EVENT, before)))
    events = query(client, BOT_EVENT, *filters, order=["-__key__"])
    return page(
        list(events.fetch(limit=limit + 1)),
        limit,
        lambda e: encode_cursor("bot_events", str(e.key.name)),
        lambda e: load(BotEvent, e),
    )


def _tokens(dimensions: BotDimensions) -> set[str]:
    return {dimension_token(k, v) for k, values in dimensions.items() for v in values}


def read_poll(
    client: Any, bot_id: str, request_uuid: str, now: float
) -> tuple[dict[str, Any] | None, Bot | None]:
    """The answer kept for this poll of the bot unless it expired by `now`, and the bot.

    One lookup of both entities (the bot's alone without a request_uuid).
    """
    bot_key = key(client, BOT, bot_id)
    keys = [bot_key, key(client, POLL_REPLY, bot_id)] if request_uuid else [bot_key]
    found = {entity.key.kind: entity for entity in client.get_multi(keys)}
    bot = found.get(BOT)
    reply = _kept_reply(found.get(POLL_REPLY), request_uuid, now)
    return reply, None if bot is None else load(Bot, bot)


def _kept_reply(entity: Any, request_uuid: str, now: float) -> dict[str, Any] | None:
    if entity is None or not request_uuid or entity.get("request_uuid") != request_uuid:
        return None
    if entity["expires_ts"] <= now:
        return None
    reply: dict[str, Any] = jsonio.loads(entity["reply"])
    return reply


def purge_replies(client: Any, now: float) -> None:
    """Deletes a batch of replies expired at `now`, REPLIES_PER_PURGE in a transaction.

    Entities of the one-per-bot layout are replaced by the bot's next
    dispatch; this clears the ones of bots that stopped being dispatched
    to, and those an older server named "<bot>/<request_uuid>". Each is
    read again in the transaction that deletes it: a dispatch may have
    replaced it with a fresh answer since the query.
    """
    expired = query(client, POLL_REPLY, ("expires_ts", "<", now), keys_only=True)
    stale = [e.key for e in expired.fetch(limit=POLL_REPLY_PURGE_BATCH)]
    for start in range(0, len(stale), REPLIES_PER_PURGE):
        keys = stale[start : start + REPLIES_PER_PURGE]

        def work(tx: Any, keys: list[Any] = keys) -> None:
            for entity in client.get_multi(keys, transaction=tx):
                if entity["expires_ts"] < now:
                    tx.delete(entity.key)

        run_transaction(client, work)
