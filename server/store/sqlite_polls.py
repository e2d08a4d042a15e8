"""Bots, poll replies and claims of the SQLite store: what a bot's poll reads and writes.

A base class of SqliteStore (server/store/sqlite.py), kept apart to keep
each module to one concern: the bot records (with the last-seen times that
idle polls hold back, sqlite_bots.SeenBots), the answers kept for replay,
and the claim of a task with what its poll records (dispatch_next).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from server import errors
from server.clock import Clock
from server.model import Bot, BotEvent, BotQuery, Page, TaskRequest, TaskResult, evolve
from server.store import codec, sqlite_bots
from server.store.base import Dispatch
from server.store.sqlite_cache import RecordCache
from server.store.sqlite_results import claim_candidate, queue_heads

log = logging.getLogger("drover.store")


class PollRecords:
    """The bot and poll operations of SqliteStore; see the module docstring."""

    _db: sqlite3.Connection
    _clock: Clock
    _cache: RecordCache
    _seen: sqlite_bots.SeenBots
    # The flush of held touches due once the first of them has waited.
    _touch_timer: asyncio.TimerHandle | None

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction (SqliteStore._write)."""
        raise NotImplementedError

    def _request(self, db: sqlite3.Connection, task_id: str) -> TaskRequest | None:
        """A task's request, cached (SqliteStore._request)."""
        raise NotImplementedError

    # Bots.

    async def get_bot(self, bot_id: str) -> Bot | None:
        """Returns the bot, or None if it was never seen."""
        self._cache.check()
        return self._bot(bot_id)

    def _bot(self, bot_id: str) -> Bot | None:
        """The bot, from the cache if it holds it (checked by the caller)."""
        bot = self._cache.bots.get(bot_id)
        if bot is None:
            row = self._db.execute("SELECT data FROM bots WHERE bot_id = ?", (bot_id,)).fetchone()
            if row is None:
                return None
            bot = codec.loads(Bot, row[0])
            self._cache.bots.put(bot_id, bot)
        return self._seen.overlay(bot)

    async def put_bot(self, bot: Bot) -> None:
        """Creates or replaces the bot record (last writer wins)."""
        with self._write() as db:
            self._cache.check()
            sqlite_bots.write_bot(db, bot, self._cache.bots.get(bot.bot_id))
        self._seen.discard(bot.bot_id)
        self._cache.bots.put(bot.bot_id, bot)

    async def touch_bot(self, bot: Bot) -> None:
        """Holds the last-seen time and state; they are written together (SeenBots)."""
        try:
            self._seen.add(bot)
        except ValueError:
            # A state that is not strict JSON cannot be patched in: write it all.
            await self.put_bot(bot)
            return
        if self._seen.is_due():
            self._write_seen()
        elif self._touch_timer is None:
            # Without further polls to carry them, held touches still reach
            # the file in time, on a timer of the event loop.
            self._touch_timer = asyncio.get_running_loop().call_later(
                self._seen.wait_secs(), self._flush_touches
            )

    def _flush_touches(self) -> None:
        """Writes the held touches (the timer's callback); a busy file keeps them held."""
        self._touch_timer = None
        try:
            self._write_seen()
        except (errors.Unavailable, sqlite3.Error) as e:
            log.warning("last-seen times of idle bots not written: %s", e)

    def _write_seen(self) -> None:
        seen = self._seen.take()
        if not seen:
            return
        try:
            with self._write() as db:
                sqlite_bots.write_seen(db, seen)
        except BaseException:
            # A busy file is not a crash: they are written with the next batch.
            self._seen.restore(seen)
            raise
        for bot_id, (ts, state, _) in seen.items():
            cached = self._cache.bots.get(bot_id)
            if cached is not None and cached.last_seen_ts < ts:
                self._cache.bots.put(bot_id, evolve(cached, last_seen_ts=ts, state=state))

    async def list_bots(self, query: BotQuery) -> Page[Bot]:
        """Lists bots by ID, filtered as `query` says, paged by `query.cursor`."""
        # The held last-seen times decide who is dead: write them first.
        self._write_seen()
        return sqlite_bots.select_bots(self._db, query)

    async def add_bot_event(self, event: BotEvent) -> None:
        """Appends an event to the bot's history."""
        sqlite_bots.insert_event(self._db, event)

    async def list_bot_events(self, bot_id: str, limit: int, cursor: str = "") -> Page[BotEvent]:
        """Lists a bot's events, newest first (events of one time in reverse order added)."""
        return sqlite_bots.select_events(self._db, bot_id, limit, cursor)

    # Poll replay.

    async def read_poll(
        self, bot_id: str, request_uuid: str
    ) -> tuple[dict[str, Any] | None, Bot | None]:
        """The answer the bot's row keeps for this poll if unexpired, and the bot.

        One check of the caches serves both (each check is a read lock of
        the file taken and dropped). Which poll the kept answer is for is
        cached too: a poll that is not a retry reads nothing.
        """
        self._cache.check()
        return self._poll_reply(bot_id, request_uuid), self._bot(bot_id)

    def _poll_reply(self, bot_id: str, request_uuid: str) -> dict[str, Any] | None:
        if not request_uuid:
            return None
        kept = self._cache.reply_uuids.get(bot_id)
        if kept is None:
            kept = sqlite_bots.read_reply_uuid(self._db, bot_id)
            self._cache.reply_uuids.put(bot_id, kept)
        if kept != request_uuid:
            return None
        return sqlite_bots.read_poll_reply(self._db, bot_id, request_uuid, self._clock.now())

    # Claims that record a poll's dispatch.

    async def claim_next(
        self,
        queue_keys: Sequence[str],
        now: float,
        assign: Callable[[TaskResult], TaskResult | None],
    ) -> TaskResult | None:
        """Claims under the write lock, one candidate at a time (see _claim)."""
        claimed = await self._claim(queue_keys, now, assign, None)
        return None if claimed is None else claimed[0]

    async def dispatch_next(
        self,
        queue_keys: Sequence[str],
        now: float,
        assign: Callable[[TaskResult], TaskResult | None],
        record: Callable[[TaskResult, TaskRequest], Dispatch],
    ) -> tuple[TaskResult, Dispatch] | None:
        """Claims as claim_next does; the dispatch is written in the claim's transaction."""
        claimed = await self._claim(queue_keys, now, assign, record)
        if claimed is None:
            return None
        result, dispatch = claimed
        assert dispatch is not None, "a dispatch is recorded with every claim"
        return result, dispatch

    async def _claim(
        self,
        queue_keys: Sequence[str],
        now: float,
        assign: Callable[[TaskResult], TaskResult | None],
        record: Callable[[TaskResult, TaskRequest], Dispatch] | None,
    ) -> tuple[TaskResult, Dispatch | None] | None:
        """Claims under the write lock, one candidate at a time.

        Reads only the heads of the queues (outside any transaction), merges
        them best first, then re-reads each candidate under the write lock,
        since another connection may have claimed it meanwhile. With
        `record`, what it returns is written in the same transaction.
        """
        keys = set(queue_keys)
        heads = [queue_heads(self._db, key, now) for key in sorted(keys)]
        for _priority, _created_ts, task_id in heapq.merge(*heads):
            dispatch = None
            with self._write() as db:
                self._cache.check()
                cached = self._cache.results.get(task_id)
                claimed = claim_candidate(db, task_id, keys, now, assign, cached)
                if claimed is not None and record is not None:
                    request = self._request(db, task_id)
                    assert request is not None, "a stored result always has its request"
                    dispatch = record(claimed, request)
                    self._write_dispatch(db, dispatch)
            if claimed is not None:
                self._cache.results.put(task_id, claimed)
                if dispatch is not None:
                    self._cache_dispatch(dispatch)
                return claimed, dispatch
        return None

    def _cache_dispatch(self, dispatch: Dispatch) -> None:
        """What a committed dispatch changed, into the caches."""
        bot_id = dispatch.bot.bot_id
        self._seen.discard(bot_id)
        self._cache.bots.put(bot_id, dispatch.bot)
        if dispatch.reply.request_uuid:
            self._cache.reply_uuids.put(bot_id, dispatch.reply.request_uuid)

    def _write_dispatch(self, db: sqlite3.Connection, dispatch: Dispatch) -> None:
        """The bot with the poll's answer, and its event, inside the claim's transaction."""
        reply = dispatch.reply if dispatch.reply.request_uuid else None
        sqlite_bots.write_bot(db, dispatch.bot, self._cache.bots.get(dispatch.bot.bot_id), reply)
        sqlite_bots.insert_event(db, dispatch.event)
