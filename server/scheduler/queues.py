"""The queue index: which queues (requested dimension sets) each bot can serve.

A pending slice waits in the queue of its normalized dimension set. A bot's
matching queues are computed once and then only extended when a new queue
appears (incrementally: only the new queues are checked) or recomputed when
the bot's dimensions change, so a poll's cost does not grow with pending work
the bot cannot run (DESIGN.md 6). The index is a cache of the Store's queue
records; `refresh` picks up queues created by other server processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from server.dimensions import matches, queue_key
from server.model import BotDimensions, DimensionPairs, Queue
from server.store.base import Store


@dataclasses.dataclass
class _BotMatches:
    dims: BotDimensions
    seen: int  # how many entries of the queue log were checked
    keys: list[str]


class QueueIndex:
    """In-memory index of queues and of the queues each bot matches."""

    def __init__(self, store: Store, on_new: Callable[[str], None] | None = None) -> None:
        self._store = store
        # Told the key of every queue that appears (held polls re-match on it).
        self._on_new = on_new
        self._queues: dict[str, Queue] = {}
        # Queues in order of arrival; a bot's cache remembers how far it has checked.
        self._log: list[Queue] = []
        self._bots: dict[str, _BotMatches] = {}
        # Work counters, so tests can show a poll's cost without timing it.
        self.queues_checked = 0

    async def refresh(self) -> int:
        """Loads queues created elsewhere (another process); returns how many were new."""
        fresh = [q for q in await self._store.list_queues() if q.key not in self._queues]
        for queue in sorted(fresh, key=lambda q: q.created_ts):
            self._add(queue)
        return len(fresh)

    async def register(self, dimensions: DimensionPairs, now: float) -> str:
        """Returns the queue key of a normalized dimension set, recording a new queue."""
        key = queue_key(dimensions)
        if key not in self._queues:
            queue = Queue(key=key, dimensions=dimensions, created_ts=now)
            await self._store.ensure_queue(queue)
            self._add(queue)
        return key

    def get(self, key: str) -> Queue | None:
        """Returns a known queue."""
        return self._queues.get(key)

    def queues_for(self, bot_id: str, dims: BotDimensions) -> list[str]:
        """Returns the keys of the queues a bot with `dims` can serve."""
        cached = self._bots.get(bot_id)
        # Records are never changed in place, so equal dims are the same dims.
        if cached is None or (cached.dims is not dims and cached.dims != dims):
            cached = _BotMatches(dims=dims, seen=0, keys=[])
            self._bots[bot_id] = cached
        if cached.seen < len(self._log):
            new = self._log[cached.seen :]
            self.queues_checked += len(new)
            cached.keys.extend(q.key for q in new if matches(dims, q.dimensions))
            cached.seen = len(self._log)
        return cached.keys

    def forget_bot(self, bot_id: str) -> None:
        """Drops a bot's cached matches (for example when it is deleted)."""
        self._bots.pop(bot_id, None)

    def _add(self, queue: Queue) -> None:
        self._queues[queue.key] = queue
        self._log.append(queue)
        if self._on_new is not None:
            self._on_new(queue.key)
