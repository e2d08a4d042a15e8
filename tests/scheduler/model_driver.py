"""Drives the real scheduler services without HTTP.

`Fleet` wires the services as server/app.py does, over a SqliteStore in a
directory and a FakeClock. `SimBot` builds the JSON bodies a bot sends (so
every request goes through the `parse_*` functions) and remembers what the
bot believes it is running. tests/scheduler/lifecycle_model.py predicts what
the services must do; tests/scheduler/test_properties.py applies each
operation to both and compares.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import multiprocessing
import pathlib
import random
import shutil
from collections.abc import Mapping
from multiprocessing.synchronize import Barrier
from typing import Any

from server.app import BOT_DIR
from server.auth.session import SessionKeys
from server.botapi.context import BotApiContext
from server.botapi.messages import (
    BotCredentials,
    parse_claim,
    parse_handshake,
    parse_poll,
    parse_task_error,
    parse_task_update,
)
from server.botapi.runs import RunService
from server.botapi.service import BotService
from server.botcode import BotCode
from server.clock import FakeClock
from server.config.live import LiveConfig
from server.model import TaskProperties, TaskRequest, TaskSlice
from server.scheduler.queues import QueueIndex
from server.scheduler.sweeper import Sweeper
from server.scheduler.tasks import TaskService
from server.scheduler.waiters import NEW_QUEUE, PollWaiters
from server.store.sqlite import SqliteStore

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SERVER_URL = "http://127.0.0.1:1"
CREDS = BotCredentials(remote_ip="127.0.0.1", headers={})
# Polls answer at once; sessions outlive any example (30 steps of at most
# 2000 s), so a poll never answers bot_restart.
RESERVATION_TIMEOUT_SECS = 60
BOT_DEATH_TIMEOUT_SECS = 600
SETTINGS = (
    "long_poll_secs: 0\n"
    f"reservation_timeout_secs: {RESERVATION_TIMEOUT_SECS}\n"
    f"bot_death_timeout_secs: {BOT_DEATH_TIMEOUT_SECS}\n"
    "session_lifetime_secs: 86400\n"
)
# bots.cfg of the quickstart forces this on every bot.
GROUP_DIMENSIONS = {"pool": ["default"]}


class TaskIds:
    """Deterministic task IDs: the server's layout, a scrambled counter for the random bits.

    Tasks created in the same millisecond order by these bits, so a
    scrambled (not increasing) counter exercises that tie-break both ways.
    """

    def __init__(self) -> None:
        self._count = 0

    def __call__(self, now: float) -> str:
        self._count += 1
        ms = int((now - 1262304000.0) * 1000)
        return f"{(ms << 20) | (((self._count * 40503) & 0xFFFF) << 4):x}"


@dataclasses.dataclass
class Fleet:
    """The scheduler's services over one store, wired as in server/app.py."""

    clock: FakeClock
    store: SqliteStore
    tasks: TaskService
    bots: BotService
    runs: RunService
    sweeper: Sweeper
    botcode: BotCode

    @classmethod
    async def open(cls, root: pathlib.Path, clock: FakeClock) -> Fleet:
        """Copies the quickstart configs under `root` and opens a store there."""
        config_dir = root / "configs"
        shutil.copytree(ROOT / "configs", config_dir, ignore=shutil.ignore_patterns("examples"))
        (config_dir / "settings.cfg").write_text(SETTINGS)
        return await cls.attach(root, clock)

    @classmethod
    async def attach(cls, root: pathlib.Path, clock: FakeClock) -> Fleet:
        """Opens the services over the configs and store `open` made under `root`.

        Another process doing so acts as a second server over the same file.
        """
        config = LiveConfig(root / "configs", clock=clock)
        store = await SqliteStore.open(root / "drover.sqlite3", clock=clock)
        botcode = BotCode(config.current, server_url=SERVER_URL, bot_dir=BOT_DIR)
        waiters = PollWaiters()
        queues = QueueIndex(store, on_new=lambda _: waiters.notify(NEW_QUEUE))
        await queues.refresh()
        ctx = BotApiContext(
            store=store,
            config=config,
            clock=clock,
            keys=SessionKeys.generate(),
            botcode=botcode,
            queues=queues,
            notifier=waiters,
            server_version="drover-test",
            server_url=SERVER_URL,
        )
        tasks = TaskService(store, config, clock, queues, waiters)
        return cls(
            clock=clock,
            store=store,
            tasks=tasks,
            bots=BotService(ctx, waiters, rng=random.Random(0)),
            runs=RunService(ctx),
            sweeper=Sweeper(store, clock, tasks, waiters),
            botcode=botcode,
        )

    async def close(self) -> None:
        """Closes the store."""
        await self.store.close()


# Tasks.


@dataclasses.dataclass(frozen=True)
class SliceSpec:
    """One slice of a generated task; `dimensions` excludes the pool."""

    dimensions: tuple[tuple[str, str], ...]
    expiration_secs: int
    wait_for_capacity: bool

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The requested dimensions, pool included."""
        return [("pool", "default"), *self.dimensions]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A generated task request."""

    priority: int
    slices: tuple[SliceSpec, ...]
    max_retries: int = 0
    bot_ping_tolerance_secs: int = 60

    def draft(self) -> TaskRequest:
        """The request as a client would submit it."""
        return TaskRequest(
            task_id="",
            created_ts=0.0,
            name="prop",
            priority=self.priority,
            slices=[
                TaskSlice(
                    properties=TaskProperties(command=["run"], dimensions=s.pairs),
                    expiration_secs=s.expiration_secs,
                    wait_for_capacity=s.wait_for_capacity,
                )
                for s in self.slices
            ],
            max_retries=self.max_retries,
            bot_ping_tolerance_secs=self.bot_ping_tolerance_secs,
        )


# Bots.


@dataclasses.dataclass
class SimBot:
    """A bot as the test plays it: its identity, session and what it believes it runs."""

    bot_id: str
    os: str
    version: str = ""
    session: str | None = None
    alive: bool = True
    # The run the bot believes it holds ("" for none), and whether the server
    # accepted a claim or update of it from this bot.
    run_id: str = ""
    confirmed: bool = False
    claims: int = 0
    # Next output offset of every run the bot was handed.
    offsets: dict[str, int] = dataclasses.field(default_factory=dict)
    history: list[str] = dataclasses.field(default_factory=list)
    calls: int = 0

    @property
    def dimensions(self) -> dict[str, list[str]]:
        """What the bot reports."""
        return {"id": [self.bot_id], "os": [self.os]}

    def drop_run(self) -> None:
        """The bot stops believing it runs anything."""
        self.run_id = ""
        self.confirmed = False

    def _adopt(self, reply: Mapping[str, Any]) -> None:
        token = reply.get("session")
        if isinstance(token, str) and token:
            self.session = token

    def _next(self, what: str) -> str:
        self.calls += 1
        return f"{what}-{self.bot_id}-{self.calls}"

    async def handshake(self, fleet: Fleet) -> dict[str, Any]:
        """Opens a session with the version the server expects."""
        self.version = fleet.botcode.for_bot(self.bot_id).digest
        body = {
            "dimensions": self.dimensions,
            "state": {"running_time": 1, "sleep_streak": 0},
            "version": self.version,
            "session_id": f"{self._next('s').lower()}/1",
        }
        reply = await fleet.bots.handshake(parse_handshake(body), CREDS)
        self._adopt(reply)
        return reply

    async def poll(self, fleet: Fleet) -> dict[str, Any]:
        """Asks for work."""
        body = {
            "dimensions": self.dimensions,
            "state": {"running_time": 1, "sleep_streak": 0},
            "version": self.version,
            "session": self.session,
            "request_uuid": self._next("poll"),
        }
        reply = await fleet.bots.poll(parse_poll(body), CREDS)
        self._adopt(reply)
        return reply

    async def claim(self, fleet: Fleet, run_id: str, claim_id: str) -> dict[str, Any]:
        """Confirms a reservation."""
        body = {"session": self.session, "claim_id": claim_id, "task_id": run_id}
        return await fleet.runs.claim(parse_claim(body), CREDS)

    def update_body(self, run_id: str, fields: Mapping[str, Any], output: bytes) -> dict[str, Any]:
        """A task_update body; output goes at the run's next offset."""
        body: dict[str, Any] = {
            "id": self.bot_id,
            "task_id": run_id,
            "session": self.session,
            "cost_usd": 0.0,
            **fields,
        }
        if output:
            body["output"] = base64.b64encode(output).decode()
            body["output_chunk_start"] = self.offsets.get(run_id, 0)
        return body

    async def update(self, fleet: Fleet, body: Mapping[str, Any]) -> dict[str, Any]:
        """Sends a task_update built by `update_body`."""
        reply = await fleet.runs.task_update(parse_task_update(body), CREDS)
        self._adopt(reply)
        return reply

    async def task_error(self, fleet: Fleet, run_id: str, client_error: bool) -> dict[str, Any]:
        """Reports that the run could not run."""
        body: dict[str, Any] = {
            "id": self.bot_id,
            "task_id": run_id,
            "session": self.session,
            "message": "could not run: {'secret': 1}",
        }
        if client_error:
            body["client_error"] = {"missing_cas": ["digest/1"]}
        return await fleet.runs.task_error(parse_task_error(body), CREDS)


# Several servers.

# How long a sweeper process may take, start to finish.
JOIN_TIMEOUT_SECS = 60


def _sweep_in_process(
    root: str, now: float, barrier: Barrier, counts: multiprocessing.Queue[int]
) -> None:
    """A second server: its own connection, index and clock; sweeps once with the others."""

    async def sweep() -> int:
        fleet = await Fleet.attach(pathlib.Path(root), FakeClock(now))
        try:
            # Blocking the loop is fine: nothing else runs in this process yet.
            barrier.wait(JOIN_TIMEOUT_SECS)
            return await fleet.sweeper.run_once()
        finally:
            await fleet.close()

    counts.put(asyncio.run(sweep()))


def sweep_in_processes(root: pathlib.Path, now: float, sweepers: int) -> list[int]:
    """Sweeps the fleet `Fleet.open` made under `root` once from each of `sweepers`
    processes, all starting together at `now`; returns each one's count of changed tasks."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(sweepers)
    counts: multiprocessing.Queue[int] = spawn.Queue()
    workers = [
        spawn.Process(target=_sweep_in_process, args=(str(root), now, barrier, counts))
        for _ in range(sweepers)
    ]
    for worker in workers:
        worker.start()
    # Each worker puts one small count, so joining before reading cannot block.
    for worker in workers:
        worker.join(JOIN_TIMEOUT_SECS)
        assert worker.exitcode == 0, "a sweeper process failed (its traceback is above)"
    return [counts.get(timeout=1) for _ in workers]
