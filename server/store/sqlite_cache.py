"""Decoded records the SQLite store read or wrote, kept in memory while they are right.

Decoding a record from its JSON costs more than finding its row, and the
bot calls read the same few records again and again (a poll reads its bot
and the request of the task it gets; the run's task_update reads the
result and the request again). So the store keeps what it read and wrote:

- Task requests never change once stored: they stay until pushed out by
  newer ones.
- Results and bots change, also through other connections to the file (an
  admin command, another server process: tests/test_replicas.py). SQLite's
  `PRAGMA data_version` changes for a connection whenever any other
  connection has committed a change to the file, so the store asks it
  before it trusts a cached result or bot and drops them all when it moved.
  What this store writes itself it puts in the cache after the commit.

Each cache is bounded (least recently used out first), so memory stays the
same however much work is pending.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Generic, TypeVar

from server.model import Bot, TaskRequest, TaskResult

K = TypeVar("K")
V = TypeVar("V")

# Entries per cache. A request or result decodes to about 1-2 KB; the calls
# that read them again come within moments (a task's dispatch, its first
# update), so a few thousand cover far more tasks in flight than one
# server handles.
REQUESTS = 2048
RESULTS = 2048
# One entry per bot seen recently: a fleet larger than this reads its
# bots' records from the file again, as without a cache.
BOTS = 16384


class Lru(Generic[K, V]):
    """A bounded map; the least recently used entry goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: collections.OrderedDict[K, V] = collections.OrderedDict()

    def get(self, key: K) -> V | None:
        """The entry of `key`, or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Sets the entry of `key`, pushing out the oldest one past the bound."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Drops every entry."""
        self._items.clear()


class RecordCache:
    """The store's caches of requests, results and bots (see the module docstring)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        # One cursor for every check: each poll and task_update makes several.
        self._version_cursor = db.cursor()
        self.requests: Lru[str, TaskRequest] = Lru(REQUESTS)
        self.results: Lru[str, TaskResult] = Lru(RESULTS)
        self.bots: Lru[str, Bot] = Lru(BOTS)
        # bot ID -> request_uuid of the answer its row keeps ("" for none):
        # every poll asks, and only a retry finds its own.
        self.reply_uuids: Lru[str, str] = Lru(BOTS)
        self._data_version = self._read_version()

    def check(self) -> None:
        """Drops the cached results, bots and reply IDs if another connection changed the file.

        Call it before trusting `results`, `bots` or `reply_uuids` (inside a write
        transaction, nobody else can commit until it ends).
        """
        version = self._read_version()
        if version != self._data_version:
            self._data_version = version
            self.results.clear()
            self.bots.clear()
            self.reply_uuids.clear()

    def _read_version(self) -> int:
        version: int = self._version_cursor.execute("PRAGMA data_version").fetchone()[0]
        return version
