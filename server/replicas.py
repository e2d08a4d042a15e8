"""Keeping a server in step with the other servers (replicas) that share its Store.

Inside one process, creating a task wakes the held polls that could take it
(server/scheduler/waiters.py) and a new queue enters the in-memory queue
index at once. Replicas tell each other nothing: what another one did is
only in the Store. So every `interval` seconds each server re-checks it:

- loads the queues other replicas created into its queue index, which
  wakes its held polls to match them (and lets any poll claim from them);
- wakes the held polls whose queues hold work (Store.queues_with_work), so
  a task created on one replica reaches a poll held on another within
  about one interval, not at the end of the hold (DESIGN.md 6);
- reads the session keys again, so a key another replica or `drover
  session-keys rotate` added verifies here and then signs.

The cost per interval is one listing of queues, one small query per queue
that polls wait on and one lookup of the keys, however many polls are held.
Everything else a replica keeps in memory is either rebuilt from the Store
(queues_for caches) or derived from the config files and bot code, which
every replica reads alike (one config revision everywhere).
"""

from __future__ import annotations

import asyncio
import logging

from server.auth import session_keystore
from server.auth.session import SessionKeys
from server.clock import Clock
from server.scheduler.queues import QueueIndex
from server.scheduler.waiters import NEW_QUEUE, PollWaiters
from server.store.base import Store

log = logging.getLogger("drover.replicas")

# How often a server re-checks a Datastore that other replicas share: a task
# created on another replica reaches a poll held here within about this long.
# Each check costs a few small reads per replica, whatever the fleet size.
DATASTORE_RECHECK_SECS = 1.0
# With SQLite one process owns the store and wakes its polls itself; the
# check only picks up what admin commands changed (a rotated session key)
# and polls woken while they were between two waits.
SQLITE_RECHECK_SECS = 10.0


class ReplicaSync:
    """Re-reads what other replicas may have changed in the Store."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        queues: QueueIndex,
        waiters: PollWaiters,
        keys: SessionKeys,
    ) -> None:
        self._store = store
        self._clock = clock
        self._queues = queues
        self._waiters = waiters
        self._keys = keys

    async def run_once(self) -> int:
        """Checks the Store once; returns how many queues with held polls had work."""
        await self._queues.refresh()
        await session_keystore.reload(self._store, self._keys)
        waited_on = self._waiters.queue_keys() - {NEW_QUEUE}
        if not waited_on:
            return 0
        ready = await self._store.queues_with_work(sorted(waited_on), self._clock.now())
        for key in ready:
            self._waiters.notify(key)
        return len(ready)

    async def run(self, interval: float) -> None:
        """Checks every `interval` seconds until cancelled, first one interval after start."""
        while True:
            # The app read queues and keys as it started: wait before the first check.
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("replica check failed; trying again in %.1f s", interval)
