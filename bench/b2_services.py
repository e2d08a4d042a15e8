"""B2 without the network: a task's way from its creation to its bot's `run`, in-process.

One bot's poll is held (long polling); a task is created through the client
API over loopback HTTP (aiohttp's test server in this process); the held
poll answers `run`; the bot completes the run with one task_update; again,
N times. Everything runs in this one process, bench/in_process.py, so the
figures hold none of the wake-ups and scheduling of B2's processes and
agree run to run within a few percent where B2's p99 moves by a millisecond.

It measures two ways a held poll gets the task, each in a fresh app,
alternating (ABAB) so that the machine's drift falls on both:
- `handed_over`: the creation stores the task reserved for the held poll
  and hands the dispatch over (server/scheduler/waiters.py), as Drover does;
- `claimed`: the creation queues the task and wakes the poll, which claims
  it in a transaction of its own (hand-over turned off in this process).
For each: CPU per cycle, from the create's send to the task_update's
answer (the create with the client's side of it, the hand-over or the
claim, the poll's answer, the task_update; the poll's work before it holds
is outside it), the store's SQLite time in it, and the time from sending
the create to the poll's answer, p50 and p99.

    .venv/bin/python bench/b2_services.py [--tasks N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from figures import Json, latency_summary, per, ratio
from in_process import ServiceBot, TimedConnection, bot_version, served_app
from open_loop import SETTINGS
from reports import base_args, run, sized
from task_api import task_body

from server.appkeys import BOT_SERVICE
from server.scheduler import waiters

# Cycles run before measuring, so the queue exists and the caches are warm.
WARMUP = 20


async def measure(tasks: int, handed_over: bool) -> Json:
    """`tasks` cycles of one held bot in a fresh app; hand-over on or off."""
    held_poll = waiters.PollWaiters.held_poll
    if not handed_over:
        waiters.PollWaiters.held_poll = _no_poll_held  # type: ignore[method-assign]
    try:
        async with served_app(SETTINGS) as (app, client):
            bot = ServiceBot(app, "bot-0", await bot_version(client))
            await bot.handshake()
            return await _cycles(app, client, bot, tasks)
    finally:
        waiters.PollWaiters.held_poll = held_poll  # type: ignore[method-assign]


def _no_poll_held(self: waiters.PollWaiters, queue_key: str) -> waiters.Waiter | None:
    """PollWaiters.held_poll with hand-over turned off: every task is queued and claimed."""
    return None


async def _cycles(app: Any, client: Any, bot: ServiceBot, tasks: int) -> Json:
    held = app[BOT_SERVICE].waiters
    cpu = sql = 0.0
    latencies: list[float] = []
    running_at_creation = 0
    for i in range(WARMUP + tasks):
        poll = asyncio.create_task(bot.poll())
        for _ in range(1000):
            if held.held:
                break
            await asyncio.sleep(0)
        started, sql_started = time.process_time(), TimedConnection.seconds
        sent = time.perf_counter()
        async with client.post("/api/v1/tasks", json=task_body(f"noop-{i}")) as resp:
            if resp.status != 200:
                raise RuntimeError(f"create task: {resp.status} {await resp.text()}")
            created = await resp.json()
        reply = await poll
        answered = time.perf_counter()
        if reply["cmd"] != "run":
            raise RuntimeError(f"the held poll answered {reply['cmd']}, not run")
        await bot.complete(reply["manifest"]["task_id"])
        if i >= WARMUP:
            cpu += time.process_time() - started
            sql += TimedConnection.seconds - sql_started
            latencies.append(answered - sent)
            running_at_creation += created["task_result"]["state"] == "RUNNING"
    return {
        "cycles": tasks,
        "handed_over_at_creation": running_at_creation,
        "cpu_us_per_cycle": per(cpu, tasks, 1e6, digits=1),
        "sqlite_us_per_cycle": per(sql, tasks, 1e6, digits=1),
        "create_to_run_secs": latencies,
    }


async def main(args: argparse.Namespace) -> Json:
    """Both ways, ABAB, each half of the cycles per run; figures of the two runs pooled."""
    runs: dict[str, list[Json]] = {"handed_over": [], "claimed": []}
    for _ in range(2):
        for name in runs:
            runs[name].append(await measure(args.tasks // 2, name == "handed_over"))
    out: Json = {name: _pooled(parts) for name, parts in runs.items()}
    ours, theirs = out["handed_over"], out["claimed"]
    out["handed_over_cpu_ratio"] = ratio(ours["cpu_us_per_cycle"], theirs["cpu_us_per_cycle"])
    out["handed_over_p50_ratio"] = ratio(
        ours["create_to_run"]["p50_ms"], theirs["create_to_run"]["p50_ms"]
    )
    return out


def _pooled(parts: list[Json]) -> Json:
    """The runs of one way together: CPU and SQLite per cycle over all, latencies pooled."""
    cycles = sum(p["cycles"] for p in parts)
    cpu = sum(p["cpu_us_per_cycle"] * p["cycles"] for p in parts)
    sql = sum(p["sqlite_us_per_cycle"] * p["cycles"] for p in parts)
    return {
        "cycles": cycles,
        "handed_over_at_creation": sum(p["handed_over_at_creation"] for p in parts),
        "cpu_us_per_cycle": per(cpu, cycles, digits=1),
        "cpu_us_per_cycle_by_run": [p["cpu_us_per_cycle"] for p in parts],
        "sqlite_us_per_cycle": per(sql, cycles, digits=1),
        "create_to_run": latency_summary([s for p in parts for s in p["create_to_run_secs"]]),
    }


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="cycles per way, N")
    return sized(parser.parse_args(), tasks=(2_000, 10_000), max_secs=(300.0, 1200.0))


if __name__ == "__main__":
    run("b2_services", main, parse_args(), SETTINGS)
