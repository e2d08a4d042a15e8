"""The fleet service: what the API shows of bots and their events."""

from __future__ import annotations

import dataclasses

from server.clock import Clock
from server.config.model import ConfigSource
from server.errors import BotNotFound, InvalidRequest
from server.model import Bot, BotEvent, BotQuery, Page
from server.scheduler.pending import bot_state
from server.store.base import Store

MAX_PAGE = 1000


class FleetService:
    """Reads bots and bot events."""

    def __init__(self, store: Store, config: ConfigSource, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    def is_dead(self, bot: Bot) -> bool:
        """A bot unseen for `bot_death_timeout_secs` is dead."""
        return bot.last_seen_ts < self._dead_before()

    def state(self, bot: Bot) -> str:
        """The bot's state: dead, quarantined (maintenance included), busy or idle.

        Judged as the pending report counts bots (server/scheduler/pending.py bot_state).
        """
        return bot_state(bot, self._dead_before())

    def _dead_before(self) -> float:
        """Bots last seen before this time are dead."""
        return self._clock.now() - self._config.current.settings.bot_death_timeout_secs

    async def get_bot(self, bot_id: str) -> Bot:
        """Returns a bot. Raises BotNotFound."""
        bot = await self._store.get_bot(bot_id)
        if bot is None:
            raise BotNotFound(bot_id)
        return bot

    async def list_bots(self, query: BotQuery) -> Page[Bot]:
        """Lists bots; `is_dead` is judged against the current time."""
        _check_limit(query.limit)
        query = dataclasses.replace(query, dead_before=self._dead_before())
        return await self._store.list_bots(query)

    async def set_admin_state(
        self, bot_id: str, *, quarantine: str | None = None, maintenance: str | None = None
    ) -> Bot:
        """Sets or clears (with "") an admin quarantine or maintenance message."""
        bot = await self.get_bot(bot_id)
        if quarantine is not None:
            bot = dataclasses.replace(bot, admin_quarantine=quarantine[:1024])
        if maintenance is not None:
            bot = dataclasses.replace(bot, admin_maintenance=maintenance[:1024])
        await self._store.put_bot(bot)
        return bot

    async def mark_terminating(self, bot_id: str, task_id: str) -> None:
        """Records that the bot was asked to terminate (shown until it reconnects)."""
        bot = await self.get_bot(bot_id)
        await self._store.put_bot(dataclasses.replace(bot, termination_task_id=task_id))

    async def list_events(self, bot_id: str, limit: int, cursor: str) -> Page[BotEvent]:
        """Lists a bot's events, newest first."""
        _check_limit(limit)
        await self.get_bot(bot_id)
        return await self._store.list_bot_events(bot_id, limit, cursor)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be in 1..{MAX_PAGE}")
