"""Simulated bots: asyncio clients speaking the bot protocol over HTTP (PROTOCOL.md 1.4-1.8).

A bot handshakes, then polls; on `run` it (optionally) claims and at once
reports the no-op done with one task_update (`exit_code: 0, duration: 0`),
then polls again; on `sleep` it sleeps what the server says. A retried call
resends the same body, so a retried poll reuses its `request_uuid` and a
lost answer is replayed. Every loop is bounded by a count or by the
fleet's stop flag. The bots of a `Fleet` share one client session and the
counters the reports read; the times a task started (its `run` answer
arrived) and was done (its task_update was accepted) are read on this
process's perf_counter and kept by task summary ID.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Mapping

import aiohttp
from figures import Json
from server_process import BOT_API

# A simulated bot gives up a call after this many tries (same body each time).
CALL_TRIES = 5
# A held poll is given this much longer than the server's hold before the bot gives up on it.
POLL_GRACE_SECS = 30.0


def summary_id(run_id: str) -> str:
    """The task (summary) ID of a run ID: its last hex digit is the try number, 0 for the task."""
    return run_id[:-1] + "0"


class BotCallError(Exception):
    """A bot call failed after its retries."""


@dataclasses.dataclass
class Fleet:
    """What a set of simulated bots share: the client session, the stop flag, counters."""

    http: aiohttp.ClientSession
    url: str
    version: str
    long_poll_secs: float
    claim: bool = False
    dimensions: Mapping[str, list[str]] = dataclasses.field(
        default_factory=lambda: {"os": ["Linux"], "pool": ["default"]}
    )
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    started_at: dict[str, float] = dataclasses.field(default_factory=dict)
    done_at: dict[str, float] = dataclasses.field(default_factory=dict)
    handshakes_done: int = 0
    polls_answered: int = 0
    polls_in_flight: int = 0

    @property
    def completed(self) -> int:
        """Tasks whose completing task_update the server accepted."""
        return len(self.done_at)

    @property
    def total_requests(self) -> int:
        """Every bot call made so far, retries included."""
        return sum(self.requests.values())

    def counters(self) -> Json:
        """The counters, for a report or to add up across client processes."""
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "handshakes_done": self.handshakes_done,
            "polls_answered": self.polls_answered,
            "polls_in_flight": self.polls_in_flight,
            "completed": self.completed,
        }


class SimBot:
    """One simulated bot: handshake, then poll → (claim) → task_update, until stopped."""

    def __init__(self, fleet: Fleet, bot_id: str) -> None:
        self.fleet = fleet
        self.bot_id = bot_id
        self.session: str | None = None
        self.dimensions = {"id": [bot_id], **fleet.dimensions}
        self.sleep_streak = 0

    async def call(self, name: str, body: Json, limit_secs: float = 30.0) -> Json:
        """POSTs a bot call, retrying the same body on transport errors and 5xx."""
        fleet = self.fleet
        kind = name.split("/", 1)[0]
        for attempt in range(CALL_TRIES):
            fleet.requests[kind] += 1
            try:
                async with fleet.http.post(
                    f"{fleet.url}{BOT_API}/{name}",
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=limit_secs),
                ) as resp:
                    if resp.status == 200:
                        data: Json = await resp.json()
                        if isinstance(data.get("session"), str) and data["session"]:
                            self.session = data["session"]
                        return data
                    fleet.errors[f"{kind}:{resp.status}"] += 1
                    if resp.status < 500:
                        raise BotCallError(f"{name}: {resp.status} {await resp.text()}")
            except (aiohttp.ClientError, TimeoutError) as e:
                fleet.errors[f"{kind}:{type(e).__name__}"] += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        raise BotCallError(f"{name}: no answer after {CALL_TRIES} tries")

    def _report(self) -> Json:
        return {
            "dimensions": self.dimensions,
            "state": {"running_time": 1, "sleep_streak": self.sleep_streak},
            "version": self.fleet.version,
        }

    async def handshake(self) -> None:
        """Opens a session."""
        body = {**self._report(), "session_id": f"{uuid.uuid4().hex}/1"}
        await self.call("handshake", body)
        self.fleet.handshakes_done += 1

    async def poll(self) -> Json:
        """One poll; retries reuse its request_uuid, so a lost answer is replayed."""
        fleet = self.fleet
        body = {**self._report(), "session": self.session, "request_uuid": uuid.uuid4().hex}
        fleet.polls_in_flight += 1
        try:
            reply = await self.call("poll", body, limit_secs=fleet.long_poll_secs + POLL_GRACE_SECS)
        finally:
            fleet.polls_in_flight -= 1
        fleet.polls_answered += 1
        return reply

    async def run_task(self, manifest: Json) -> None:
        """Claims (optionally) and completes a no-op run at once."""
        fleet = self.fleet
        run_id: str = manifest["task_id"]
        if fleet.claim:
            claim = {"session": self.session, "claim_id": uuid.uuid4().hex, "task_id": run_id}
            answer = await self.call("claim", claim)
            if answer.get("cmd") != "run":
                fleet.errors["claim:skip"] += 1
                return
        update = {
            "id": self.bot_id,
            "task_id": run_id,
            "session": self.session,
            "cost_usd": 0.0,
            "exit_code": 0,
            "duration": 0.0,
        }
        answer = await self.call(f"task_update/{run_id}", update)
        if not answer.get("ok") or answer.get("must_stop"):
            fleet.errors["task_update:refused"] += 1
            return
        fleet.done_at[summary_id(run_id)] = time.perf_counter()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fleet.stop.wait(), seconds)

    async def run(
        self, *, handshake: bool = True, max_polls: int = 10**9, delay: float = 0.0
    ) -> None:
        """Polls until the fleet is stopped (or `max_polls`); handshakes first if asked.

        `delay` seconds pass before anything else (to spread a fleet's polls in time).
        """
        fleet = self.fleet
        if delay > 0:
            await self._pause(delay)
        if handshake or self.session is None:
            await self.handshake()
        for _ in range(max_polls):
            if fleet.stop.is_set():
                return
            reply = await self.poll()
            cmd = reply.get("cmd")
            if cmd == "run":
                fleet.started_at[summary_id(reply["manifest"]["task_id"])] = time.perf_counter()
                self.sleep_streak = 0
                await self.run_task(reply["manifest"])
            elif cmd == "sleep":
                self.sleep_streak += 1
                await self._pause(float(reply.get("duration", 1.0)))
            elif cmd == "bot_restart":
                fleet.errors["poll:bot_restart"] += 1
                await self.handshake()
            elif cmd == "update":
                fleet.errors["poll:update"] += 1
                fleet.version = str(reply.get("version", fleet.version))
            else:
                fleet.errors[f"poll:{cmd}"] += 1
                return


class BotGroup:
    """Simulated bots running as asyncio tasks; stopping cancels held polls."""

    def __init__(self, fleet: Fleet, count: int, prefix: str = "bench-bot", first: int = 0) -> None:
        self.fleet = fleet
        self.bots = [SimBot(fleet, f"{prefix}-{i}") for i in range(first, first + count)]
        self.tasks: list[asyncio.Task[None]] = []

    async def handshake_all(self, concurrency: int = 100) -> None:
        """Handshakes every bot, at most `concurrency` at a time."""
        cursor = iter(self.bots)

        async def worker() -> None:
            for bot in cursor:
                await bot.handshake()

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(self.bots)))))

    def start(self, *, handshake: bool = False, spread_secs: float = 0.0) -> None:
        """Starts every bot's poll loop, the starts spread evenly over `spread_secs`."""
        step = spread_secs / max(len(self.bots), 1)
        self.tasks = [
            asyncio.create_task(bot.run(handshake=handshake, delay=i * step))
            for i, bot in enumerate(self.bots)
        ]

    def failures(self) -> list[str]:
        """The errors of bots that stopped on their own."""
        return [
            repr(task.exception())
            for task in self.tasks
            if task.done() and not task.cancelled() and task.exception() is not None
        ]

    async def stop(self) -> None:
        """Stops every bot: sets the stop flag, then cancels what is still waiting."""
        self.fleet.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
