"""Long polling: idle bots' polls wait here until a task for them may have arrived.

A held poll registers one waiter under each queue key it can serve. A task
that enters a queue in this process wakes one poll waiting on it
(`notify_one`, through `TaskArrivals`): one task can go to one bot only, and
waking every poll of a busy queue for each task would make all but one of
them claim for nothing (with 20 idle bots, 19 wasted claims per task). The
woken poll is handed the queue key; if its claim then takes a task of
another queue (`claimed`) or fails (`pass_on`), it passes the key on, so a
task is never left waiting while a poll that could take it sleeps.

A held poll may also take a task as it is created (`held_poll`): the
creation finds the oldest poll of the task's queue not woken yet, promises
the task to it, stores the task already reserved for that poll's bot with
the poll's dispatch in its own transaction (Store.create_task), and hands
the dispatch over. The poll answers at once, without a claim of its own.
Only a poll nothing has woken is promised a task: it found no work in any
of its queues at its last claim, so the new task is what its claim would
take. A creation that fails releases its promise: the poll claims then,
as a woken poll does, and holds again if it finds nothing.

Everything else wakes every waiter of a key (`notify`): a new queue (any
poll may match it), the output followers of a task, and the tasks that
other server processes queued, which are found by a re-check of the Store
at a short interval (server/replicas.py, DESIGN.md 6) without knowing how
many arrived.

A hold ends at a time on a grid of the loop's clock (HoldTimers), so that
the holds of an idle fleet that end close together end together.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from server.model import TaskRequest, TaskResult
from server.store.base import Dispatch

# A task handed to a held poll: its first run, reserved for the poll's bot,
# and what the poll's dispatch records (as Store.dispatch_next returns them).
Dispatched = tuple[TaskResult, Dispatch]
# What a held poll would record for a new task handed to it at a time.
Offer = Callable[[TaskResult, TaskRequest, float], Dispatched]

# The pseudo queue notified whenever a new queue appears: a held poll cannot
# be registered under a queue that did not exist when it started waiting.
NEW_QUEUE = "*new-queue*"

# The grid of hold deadlines, in seconds of the loop's clock (HoldTimers).
HOLD_TICK_SECS = 0.5
# Holds shorter than this many ticks end when asked: rounding would cut them
# by more than a tenth.
UNROUNDED_TICKS = 10


class Waiter:
    """One held poll's wake-up: set once, by a notification or by its timeout."""

    __slots__ = ("_future", "_promise", "handed", "offer")

    def __init__(self, offer: Offer | None = None) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The queue key of the task a `notify_one` handed this waiter, if any.
        self.handed: str | None = None
        # How the poll takes a task handed over at its creation (None: it cannot).
        self.offer = offer
        # Settled with the task handed over, or None when its creation failed
        # (the poll may be promised another one then).
        self._promise: asyncio.Future[Dispatched | None] | None = None

    @property
    def promised(self) -> bool:
        """True while a task being created is promised to this waiter."""
        return self._promise is not None and not self._promise.done()

    def promise(self) -> None:
        """Promises the waiter a task being created (PollWaiters.held_poll)."""
        self._promise = asyncio.get_running_loop().create_future()

    def deliver(self, dispatched: Dispatched | None) -> None:
        """Settles the promise and wakes the poll: with the task stored for it, or None.

        A poll released with None claims as a woken poll does: another
        task may have passed it by while it was promised (notify_one skips
        promised waiters).
        """
        if self._promise is not None and not self._promise.done():
            self._promise.set_result(dispatched)
        self.set()

    async def handed_over(self) -> Dispatched | None:
        """The task handed to this waiter, once its creation settles; None if none was."""
        if self._promise is None:
            return None
        return await self._promise

    def set(self) -> None:
        """Wakes the waiter (again: no effect)."""
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        """True once woken or timed out."""
        return self._future.done()

    async def wait(self, secs: float) -> None:
        """Returns once woken, or after `secs` seconds.

        A timer handle rather than asyncio.wait_for: no task per held poll.
        """
        if self._future.done():
            return
        timer = asyncio.get_running_loop().call_later(max(secs, 0.0), self.set)
        try:
            await self._future
        finally:
            timer.cancel()

    async def woken(self) -> None:
        """Returns once set."""
        await self._future


class HoldTimers:
    """Ends held polls at deadlines on a grid of HOLD_TICK_SECS, one loop timer each.

    Each poll of an idle fleet ends at its own moment: a wake-up of the
    event loop per poll, run cold, and a timer per held poll. With
    deadlines rounded down to the grid (a hold ends up to a tick early,
    never late: PROTOCOL.md T1), the holds that end within one tick are
    answered in one turn of the loop, from one timer, and a held poll
    allocates none.
    """

    def __init__(self, tick_secs: float = HOLD_TICK_SECS) -> None:
        self._tick = tick_secs
        # Deadline -> the waiters it ends; the float is the same for every
        # deadline() rounded to one grid time.
        self._due: dict[float, set[Waiter]] = {}

    def deadline(self, secs: float) -> float:
        """The loop time `secs` from now, rounded down to the grid when `secs` is long."""
        end = asyncio.get_running_loop().time() + secs
        if secs < UNROUNDED_TICKS * self._tick:
            return end
        return math.floor(end / self._tick) * self._tick

    async def wait(self, waiter: Waiter, deadline: float) -> bool:
        """Returns once `waiter` is woken, or at `deadline` (a time deadline() gave).

        True when the deadline has come, also if the waiter was woken too.
        """
        if waiter.is_set():
            return asyncio.get_running_loop().time() >= deadline
        due = self._due.get(deadline)
        if due is None:
            due = self._due[deadline] = set()
            asyncio.get_running_loop().call_at(deadline, self._end, deadline)
        due.add(waiter)
        try:
            await waiter.woken()
        finally:
            due.discard(waiter)
        return self._due.get(deadline) is not due

    def _end(self, deadline: float) -> None:
        for waiter in self._due.pop(deadline, ()):
            waiter.set()

    @property
    def pending(self) -> int:
        """How many deadlines have a timer running (for tests)."""
        return len(self._due)


class PollWaiters:
    """Waiters of held polls (and of output followers), by key, oldest first."""

    def __init__(self) -> None:
        # Dicts as ordered sets: notify_one wakes the longest-waiting poll.
        self._waiting: dict[str, dict[Waiter, None]] = {}

    def notify(self, queue_key: str) -> None:
        """Wakes every waiter of `queue_key`."""
        for waiter in self._waiting.get(queue_key, ()):
            waiter.set()

    def notify_one(self, queue_key: str) -> None:
        """Hands one task of `queue_key` to the oldest waiter of it not woken yet.

        When every waiter of the key is already woken, nobody is: they are
        about to claim, and one that takes a task of another queue passes
        its own key on.
        """
        for waiter in self._waiting.get(queue_key, ()):
            if not waiter.is_set() and not waiter.promised:
                waiter.handed = queue_key
                waiter.set()
                return

    def held_poll(self, queue_key: str) -> Waiter | None:
        """Promises a task being created in `queue_key` to the oldest poll that can take it.

        That is a poll not woken, not promised a task yet and holding an
        offer. The caller must `deliver` to the waiter returned, the task
        or None, whatever happens.
        """
        for waiter in self._waiting.get(queue_key, ()):
            if waiter.offer is not None and not waiter.is_set() and not waiter.promised:
                waiter.promise()
                return waiter
        return None

    def claimed(self, waiter: Waiter, queue_key: str | None) -> None:
        """Settles a woken poll's claim: it took a task of `queue_key` (None: no task).

        A poll handed a task of another queue than the one it took passes
        that task on to another poll. One that took none passes nothing on:
        the task it was handed was in a queue it claimed from, so somebody
        else took it first (or it ended).
        """
        handed, waiter.handed = waiter.handed, None
        if handed is not None and queue_key is not None and handed != queue_key:
            self.notify_one(handed)

    def pass_on(self, waiter: Waiter) -> None:
        """Hands the task `waiter` was woken for to another poll (its claim did not happen)."""
        handed, waiter.handed = waiter.handed, None
        if handed is not None:
            self.notify_one(handed)

    @contextlib.contextmanager
    def waiting(self, queue_keys: Sequence[str], offer: Offer | None = None) -> Iterator[Waiter]:
        """Registers one waiter under every key for the duration of the block.

        With `offer`, a task may be handed to it as it is created
        (held_poll). A block left by an exception (a poll cancelled while it
        waited) hands on any task its waiter was woken for. A task promised
        to it is stored reserved for its bot all the same, like a claimed
        task whose answer was lost on the way: a retry of the poll (the same
        request_uuid) is answered with it, else the reservation times out.
        """
        waiter = Waiter(offer)
        for key in queue_keys:
            self._waiting.setdefault(key, {})[waiter] = None
        try:
            yield waiter
        except BaseException:
            self._unregister(waiter, queue_keys)
            self.pass_on(waiter)
            raise
        self._unregister(waiter, queue_keys)

    def _unregister(self, waiter: Waiter, queue_keys: Sequence[str]) -> None:
        for key in queue_keys:
            waiters = self._waiting.get(key)
            if waiters is not None:
                waiters.pop(waiter, None)
                if not waiters:
                    del self._waiting[key]

    def queue_keys(self) -> set[str]:
        """The keys polls wait on now (NEW_QUEUE included when any poll waits)."""
        return set(self._waiting)

    @property
    def held(self) -> int:
        """How many distinct polls are waiting (for metrics and tests)."""
        return len({id(w) for waiters in self._waiting.values() for w in waiters})


class Notifier(Protocol):
    """Told when a queue gets work, so held polls can wake up."""

    def notify(self, queue_key: str) -> None: ...


class Arrivals(Notifier, Protocol):
    """The notifier of task creation, which may hand a new task to a held poll."""

    def held_poll(self, queue_key: str) -> Waiter | None: ...


class NullNotifier:
    """A notifier that tells no one."""

    def notify(self, queue_key: str) -> None:
        """Does nothing."""

    def held_poll(self, queue_key: str) -> Waiter | None:
        """No poll is held here."""
        return None


class TaskArrivals:
    """The Notifier of the scheduler (server/scheduler/tasks.py) for held polls.

    Told once per task that enters a queue in this process; wakes one poll
    that can take it.
    """

    def __init__(self, waiters: PollWaiters) -> None:
        self._waiters = waiters

    def notify(self, queue_key: str) -> None:
        """One task entered `queue_key`: wake one poll waiting on it."""
        self._waiters.notify_one(queue_key)

    def held_poll(self, queue_key: str) -> Waiter | None:
        """A held poll promised the task being created in `queue_key` (PollWaiters.held_poll)."""
        return self._waiters.held_poll(queue_key)
