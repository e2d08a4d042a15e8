"""The client API calls a benchmark makes: create no-op tasks, at once or on a schedule.

Tasks are created with POST /api/v1/tasks, the way any client creates
them; `submit_at_rate` does it open-loop (on a fixed schedule that does
not wait for earlier answers), which is what submit-to-start latency needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence

import aiohttp
from figures import Json

# A task body by its index in a batch.
BodyOf = Callable[[int], Json]


def task_body(
    name: str,
    dimensions: Sequence[tuple[str, str]] = (("pool", "default"),),
    *,
    expiration_secs: int = 3600,
    tags: Sequence[str] = (),
) -> Json:
    """A no-op NewTaskRequest that waits for capacity (never NO_RESOURCE at creation)."""
    return {
        "name": name,
        "priority": 100,
        "tags": list(tags),
        "task_slices": [
            {
                "expiration_secs": expiration_secs,
                "wait_for_capacity": True,
                "properties": {
                    "command": ["true"],
                    "dimensions": [{"key": k, "value": v} for k, v in dimensions],
                    "execution_timeout_secs": 60,
                },
            }
        ],
    }


async def create_task(http: aiohttp.ClientSession, url: str, body: Json) -> str:
    """Creates a task; returns its ID. Raises on any answer but 200."""
    async with http.post(f"{url}/api/v1/tasks", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"create task: {resp.status} {await resp.text()}")
        data = await resp.json()
    task_id: str = data["task_id"]
    return task_id


async def create_tasks(
    http: aiohttp.ClientSession, url: str, count: int, body: BodyOf, *, concurrency: int = 32
) -> list[str]:
    """Creates `count` tasks with at most `concurrency` requests in flight; returns IDs."""
    ids: list[str] = [""] * count
    cursor = iter(range(count))

    async def worker() -> None:
        for i in cursor:
            ids[i] = await create_task(http, url, body(i))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return ids


@dataclasses.dataclass
class Submitted:
    """What an open-loop submission did: when each task was sent, and how late."""

    sent_at: dict[str, float]
    started: float
    ended: float
    lag: list[float]

    @property
    def lag_max_ms(self) -> float:
        """How far behind its schedule the submitter fell at worst, in ms."""
        return round(1000 * max(self.lag), 3) if self.lag else 0.0

    @property
    def submitted_per_s(self) -> float:
        """The rate the submitter achieved."""
        elapsed = self.ended - self.started
        return round(len(self.sent_at) / elapsed, 1) if elapsed > 0 else 0.0


async def submit_at_rate(
    http: aiohttp.ClientSession,
    url: str,
    target: float,
    secs: float,
    body: BodyOf,
    *,
    max_in_flight: int = 256,
) -> Submitted:
    """Creates tasks on a fixed schedule (open loop): task i is sent at start + i / target.

    Each task's send time is taken just before its request, on this
    process's perf_counter, keyed by the task ID the answer gives. Sends do
    not wait for earlier answers, up to `max_in_flight` at once; past that
    the submitter falls behind, which `lag` records.
    """
    count = int(target * secs)
    sent_at: dict[str, float] = {}
    in_flight = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()
    lag: list[float] = []

    async def send(i: int) -> None:
        async with in_flight:
            t = time.perf_counter()
            sent_at[await create_task(http, url, body(i))] = t

    start = time.perf_counter()
    for i in range(count):
        due = start + i / target
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            lag.append(now - due)
        task = asyncio.create_task(send(i))
        running.add(task)
        task.add_done_callback(running.discard)
    ended = time.perf_counter()
    await asyncio.gather(*running)
    return Submitted(sent_at=sent_at, started=start, ended=ended, lag=lag)


async def count_tasks(http: aiohttp.ClientSession, url: str, state: str) -> int:
    """How many tasks are in `state` (GET /api/v1/tasks:count)."""
    async with http.get(f"{url}/api/v1/tasks:count", params={"state": state}) as resp:
        data = await resp.json()
    return int(data.get("count", 0))


async def bot_version(http: aiohttp.ClientSession, url: str) -> str:
    """The bot version the server expects (GET /api/v1/server → bot_version)."""
    async with http.get(f"{url}/api/v1/server") as resp:
        if resp.status != 200:
            raise RuntimeError(f"server details: {resp.status} {await resp.text()}")
        data = await resp.json()
    version: str = data["bot_version"]
    return version
