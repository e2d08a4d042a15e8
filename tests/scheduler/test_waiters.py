"""Held polls' wake-ups (server/scheduler/waiters.py): one task wakes one poll."""

from __future__ import annotations

import asyncio
from typing import Any

from server.scheduler.waiters import UNROUNDED_TICKS, HoldTimers, PollWaiters, TaskArrivals


async def test_a_task_wakes_one_poll_oldest_first() -> None:
    """One task in a queue wakes the longest-waiting poll of it, and only that one."""
    waiters = PollWaiters()
    with waiters.waiting(["q"]) as first, waiters.waiting(["q"]) as second:
        TaskArrivals(waiters).notify("q")
        assert first.is_set()
        assert not second.is_set()
        assert first.handed == "q"


async def test_each_task_wakes_another_poll() -> None:
    """Two tasks wake two polls; a third task with every poll woken wakes nobody new,
    not even a poll that starts waiting after it."""
    waiters = PollWaiters()
    with waiters.waiting(["q"]) as first, waiters.waiting(["q"]) as second:
        waiters.notify_one("q")
        waiters.notify_one("q")
        waiters.notify_one("q")
        assert first.is_set()
        assert second.is_set()
        with waiters.waiting(["q"]) as late:
            assert not late.is_set()


async def test_a_poll_that_took_another_queue_passes_its_task_on() -> None:
    """A poll woken for q1 that claimed a task of q2 hands the q1 task to the next poll."""
    waiters = PollWaiters()
    with waiters.waiting(["q1", "q2"]) as woken, waiters.waiting(["q1"]) as other:
        waiters.notify_one("q1")
        waiters.claimed(woken, "q2")
        assert other.is_set()
        assert other.handed == "q1"


async def test_a_poll_that_took_its_task_passes_nothing_on() -> None:
    """A woken poll that claimed from its queue, or found nothing, wakes nobody else."""
    waiters = PollWaiters()
    with (
        waiters.waiting(["q"]) as woken,
        waiters.waiting(["q"]) as other,
        waiters.waiting(["q"]) as third,
    ):
        waiters.notify_one("q")
        waiters.claimed(woken, "q")
        assert not other.is_set()
        waiters.notify_one("q")
        waiters.claimed(other, None)
        assert not third.is_set()


async def test_a_poll_that_failed_to_claim_passes_its_task_on() -> None:
    """A woken poll whose claim did not happen (an error) hands its task to the next poll."""
    waiters = PollWaiters()
    with waiters.waiting(["q"]) as woken, waiters.waiting(["q"]) as other:
        waiters.notify_one("q")
        waiters.pass_on(woken)
        assert other.is_set()


async def test_notify_wakes_every_waiter() -> None:
    """notify (new queues, output followers, other replicas' tasks) wakes all waiters of a key."""
    waiters = PollWaiters()
    with waiters.waiting(["k"]) as first, waiters.waiting(["k"]) as second:
        waiters.notify("k")
        assert first.is_set()
        assert second.is_set()
        assert first.handed is None


async def test_wait_returns_when_woken_or_at_its_timeout() -> None:
    """A waiter's wait ends as soon as it is woken, and by itself after its time."""
    waiters = PollWaiters()
    with waiters.waiting(["k"]) as waiter:
        asyncio.get_running_loop().call_soon(waiters.notify, "k")
        await asyncio.wait_for(waiter.wait(60), 5)
    with waiters.waiting(["k"]) as idle:
        await asyncio.wait_for(idle.wait(0.01), 5)
        assert idle.is_set()
    assert waiters.held == 0


async def test_a_poll_cancelled_after_its_wake_up_passes_its_task_on() -> None:
    """A poll woken for a task, then cancelled before it claimed, hands the task on."""
    waiters = PollWaiters()
    woken_block = waiters.waiting(["q"])
    woken = woken_block.__enter__()
    with waiters.waiting(["q"]) as other:
        waiters.notify_one("q")
        assert woken.handed == "q"
        assert not other.is_set()
        cancelled = asyncio.CancelledError()
        assert not woken_block.__exit__(asyncio.CancelledError, cancelled, None)
        assert other.is_set()
        assert other.handed == "q"


# Hold deadlines on a grid (HoldTimers).


async def test_long_holds_end_on_the_grid_never_late() -> None:
    """A long hold's deadline is a grid time within one tick before the exact end."""
    timers = HoldTimers(tick_secs=0.5)
    now = asyncio.get_running_loop().time()
    deadline = timers.deadline(40)
    assert now + 40 - 0.5 <= deadline <= now + 40
    assert deadline / 0.5 == int(deadline / 0.5)


async def test_short_holds_are_not_rounded() -> None:
    """A hold of fewer than UNROUNDED_TICKS ticks ends when asked."""
    timers = HoldTimers(tick_secs=0.5)
    before = asyncio.get_running_loop().time()
    deadline = timers.deadline(UNROUNDED_TICKS * 0.5 - 0.1)
    after = asyncio.get_running_loop().time()
    assert before + 4.9 <= deadline <= after + 4.9


async def test_holds_of_one_tick_share_a_timer_and_end_together() -> None:
    """Waiters of one deadline end in one turn from one timer; each sees its end."""
    timers = HoldTimers(tick_secs=0.05)
    deadline = timers.deadline(1.0)
    waiters = PollWaiters()
    with waiters.waiting(["a"]) as first, waiters.waiting(["b"]) as second:
        ends = [
            asyncio.ensure_future(timers.wait(first, deadline)),
            asyncio.ensure_future(timers.wait(second, deadline)),
        ]
        await asyncio.sleep(0)
        assert timers.pending == 1
        assert await asyncio.wait_for(asyncio.gather(*ends), 5) == [True, True]
    assert asyncio.get_running_loop().time() >= deadline
    assert timers.pending == 0


async def test_a_woken_hold_has_not_ended_and_leaves_its_deadline() -> None:
    """A waiter woken before its deadline returns False at once; the deadline stays for others."""
    timers = HoldTimers()
    deadline = timers.deadline(60)
    waiters = PollWaiters()
    with waiters.waiting(["q"]) as woken, waiters.waiting(["r"]) as other:
        held = asyncio.ensure_future(timers.wait(other, deadline))
        asyncio.get_running_loop().call_soon(waiters.notify, "q")
        assert await asyncio.wait_for(timers.wait(woken, deadline), 5) is False
        assert not held.done()
        assert timers.pending == 1
        held.cancel()
    assert await asyncio.wait_for(timers.wait(woken, deadline), 5) is False


async def test_a_hold_past_its_deadline_ends_at_once() -> None:
    """Waiting again on a deadline that has passed ends in the next turns."""
    timers = HoldTimers()
    deadline = asyncio.get_running_loop().time() - 1
    with PollWaiters().waiting(["q"]) as waiter:
        assert await asyncio.wait_for(timers.wait(waiter, deadline), 5) is True


def _offer(result: object, request: object, now: float) -> Any:
    raise AssertionError("only the creation calls an offer")


async def test_a_task_is_promised_to_the_oldest_unwoken_poll_with_an_offer() -> None:
    """held_poll passes over polls without an offer, woken ones and promised ones."""
    waiters = PollWaiters()
    with (
        waiters.waiting(["q"]) as no_offer,
        waiters.waiting(["q"], _offer) as woken,
        waiters.waiting(["q"], _offer) as first,
        waiters.waiting(["q"], _offer) as second,
    ):
        woken.set()
        assert waiters.held_poll("q") is first
        assert first.promised
        assert not first.is_set(), "a promise does not wake the poll"
        assert waiters.held_poll("q") is second
        assert waiters.held_poll("q") is None
        assert waiters.held_poll("other") is None
        assert not no_offer.promised


async def test_a_promised_poll_is_not_woken_for_another_task() -> None:
    """notify_one skips a promised poll and wakes the next one instead."""
    waiters = PollWaiters()
    with waiters.waiting(["q"], _offer) as promised, waiters.waiting(["q"]) as other:
        assert waiters.held_poll("q") is promised
        waiters.notify_one("q")
        assert not promised.is_set()
        assert other.is_set()


async def test_delivery_wakes_the_poll_with_its_task_and_a_release_with_none() -> None:
    """deliver(task) hands the task over; deliver(None) wakes the poll to claim."""
    waiters = PollWaiters()
    handed: Any = ("result", "dispatch")
    with waiters.waiting(["q"], _offer) as taken, waiters.waiting(["q"], _offer) as released:
        assert waiters.held_poll("q") is taken
        assert waiters.held_poll("q") is released
        waiting = asyncio.create_task(taken.handed_over())
        await asyncio.sleep(0)
        assert not waiting.done(), "the poll waits for its creation to settle"
        taken.deliver(handed)
        assert await waiting == handed
        assert taken.is_set()
        released.deliver(None)
        assert released.is_set()
        assert not released.promised
        assert await released.handed_over() is None
    with waiters.waiting(["q"], _offer) as fresh:
        assert await fresh.handed_over() is None, "a poll never promised has nothing handed"
