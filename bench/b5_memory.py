"""B5: server memory per pending task and per connected bot.

One server (`long_poll_secs: 40`). After a warm-up (one bot runs one task,
so code paths and caches are loaded), the server's RSS (VmRSS from
/proc/<pid>/status) is read; then M tasks that no bot can run
(`os: Windows`) are created through the API, in parallel, and RSS is read
again; then B bots (in client processes, bench/bot_fleet.py) handshake and
park in held polls, and RSS is read a third time. Per-item figures are the
differences divided by M and B.

    .venv/bin/python bench/b5_memory.py [--full] [--tasks M] [--bots B]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bot_fleet import BotProcesses
from figures import Json, per, rate
from reports import base_args, run, sized, wait_until
from server_process import drover
from sim_bots import BotGroup, Fleet
from task_api import bot_version, create_task, create_tasks, task_body

LONG_POLL_SECS = 40
SETTINGS = {"long_poll_secs": LONG_POLL_SECS}
# The target: under 2 KiB of server memory per pending task.
TARGET_BYTES_PER_TASK = 2048
# Time for the server to finish what the last calls started before RSS is read.
SETTLE_SECS = 2.0
# How long the bots' first polls may take to be all in.
HOLD_SECS = 120.0
# Tasks created through the API at once while filling.
CREATE_CONCURRENCY = 64


def _unrunnable(i: int) -> Json:
    return task_body(f"pending-{i}", (("os", "Windows"), ("pool", "default")))


async def measure_memory(tasks: int, bots: int, procs: int) -> Json:
    """RSS growth per pending task and per connected (held) bot."""
    async with drover(SETTINGS) as (server, http):
        version = await bot_version(http, server.url)
        fleet = Fleet(http, server.url, version, LONG_POLL_SECS)
        warm = BotGroup(fleet, 1, prefix="warm-bot")
        await create_task(http, server.url, task_body("warm-up"))
        warm.start(handshake=True)
        await wait_until(lambda: fleet.completed >= 1, within=30.0)
        await warm.stop()
        await asyncio.sleep(SETTLE_SECS)
        rss0 = server.rss_bytes()

        start = time.perf_counter()
        await create_tasks(http, server.url, tasks, _unrunnable, concurrency=CREATE_CONCURRENCY)
        create_secs = time.perf_counter() - start
        await asyncio.sleep(SETTLE_SECS)
        rss1 = server.rss_bytes()

        held = BotProcesses(server.url, version, bots, long_poll_secs=LONG_POLL_SECS, procs=procs)
        try:
            await held.start()
            await held.poll(0.0)
            stats = await held.wait_for(lambda s: s["polls_in_flight"] >= bots, HOLD_SECS)
            await asyncio.sleep(SETTLE_SECS)
            rss2 = server.rss_bytes()
        finally:
            final = await held.stop()
    return {
        "tasks": tasks,
        "bots": bots,
        "client_procs": held.procs,
        "create_tasks_per_s": rate(tasks, create_secs),
        "rss_mib_warm": round(rss0 / 2**20, 1),
        "rss_mib_with_tasks": round(rss1 / 2**20, 1),
        "rss_mib_with_tasks_and_bots": round(rss2 / 2**20, 1),
        "bytes_per_pending_task": per(rss1 - rss0, tasks, digits=1),
        "bytes_per_connected_bot": per(rss2 - rss1, bots, digits=1),
        "polls_held_at_reading": stats["polls_in_flight"],
        "target_bytes_per_task": TARGET_BYTES_PER_TASK,
        "errors": {**dict(fleet.errors), **final.get("errors", {})},
    }


async def main(args: argparse.Namespace) -> Json:
    """Measures memory at the chosen sizes."""
    return await measure_memory(args.tasks, args.bots, args.client_procs)


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="pending tasks M")
    parser.add_argument("--bots", type=int, default=0, help="connected bots B")
    parser.add_argument(
        "--client-procs", type=int, default=0, help="client processes (0: one per 5,000 bots)"
    )
    return sized(
        parser.parse_args(), tasks=(2_000, 100_000), bots=(500, 10_000), max_secs=(600.0, 3600.0)
    )


if __name__ == "__main__":
    run("b5_memory", main, parse_args(), SETTINGS)
