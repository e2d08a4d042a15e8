"""Long polling: idle bots' polls wait here until a task for them may have arrived.

A held poll registers one event under each queue key it can serve; creating
or re-queueing a task notifies its queue, which wakes exactly the polls that
could take it. Across server processes nobody notifies, so each replica
re-checks the Store for the queues its polls wait on at a short interval
and notifies those with work (server/replicas.py, DESIGN.md 6).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence

# The pseudo queue notified whenever a new queue appears: a held poll cannot
# be registered under a queue that did not exist when it started waiting.
NEW_QUEUE = "*new-queue*"


class PollWaiters:
    """Events of held polls, by queue key."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    def notify(self, queue_key: str) -> None:
        """Wakes every poll waiting on `queue_key`."""
        for event in self._waiting.get(queue_key, ()):
            event.set()

    @contextlib.contextmanager
    def waiting(self, queue_keys: Sequence[str]) -> Iterator[asyncio.Event]:
        """Registers one event under every key for the duration of the block."""
        event = asyncio.Event()
        for key in queue_keys:
            self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for key in queue_keys:
                waiters = self._waiting.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiting[key]

    def queue_keys(self) -> set[str]:
        """The keys polls wait on now (NEW_QUEUE included when any poll waits)."""
        return set(self._waiting)

    @property
    def held(self) -> int:
        """How many distinct polls are waiting (for metrics and tests)."""
        return len({id(e) for events in self._waiting.values() for e in events})
