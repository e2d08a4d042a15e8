"""B5: server memory per pending task and per connected bot.

One server (`long_poll_secs: 40`). After a warm-up (one bot runs one task,
so code paths and caches are loaded), the server's RSS (VmRSS from
/proc/<pid>/status) is read; then M tasks that no bot can run
(`os: Windows`) are created through the API, in parallel, and RSS is read
again; then B bots handshake and park in held polls, and RSS is read a
third time. Per-item figures are the differences divided by M and B.

    .venv/bin/python bench/b5_memory.py [--full] [--tasks M] [--bots B]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import (
    BotGroup,
    Fleet,
    Json,
    base_args,
    bot_version,
    create_task,
    create_tasks,
    drover,
    emit,
    load_average,
    rate,
    run,
    task_body,
    wait_until,
)

LONG_POLL_SECS = 40
SETTINGS = {"long_poll_secs": LONG_POLL_SECS, "max_bot_sleep_time": 1}
# The target: under 2 KiB of server memory per pending task.
TARGET_BYTES_PER_TASK = 2048
# Time for the server to finish what the last calls started before RSS is read.
SETTLE_SECS = 2.0


async def measure_memory(tasks: int, bots: int) -> Json:
    """RSS growth per pending task and per connected (held) bot."""
    async with drover(SETTINGS) as (server, http):
        version = await bot_version(http, server.url)
        fleet = Fleet(http, server.url, version, LONG_POLL_SECS)
        warm = BotGroup(fleet, 1, prefix="warm-bot")
        await create_task(http, server.url, task_body("warm-up"))
        warm.start(handshake=True)
        await wait_until(lambda: fleet.completed >= 1, within=30.0)
        await warm.stop()
        fleet.stop.clear()
        await asyncio.sleep(SETTLE_SECS)
        rss0 = server.rss_bytes()

        start = time.perf_counter()
        await create_tasks(
            http,
            server.url,
            tasks,
            lambda i: task_body(f"pending-{i}", (("os", "Windows"), ("pool", "default"))),
        )
        create_secs = time.perf_counter() - start
        await asyncio.sleep(SETTLE_SECS)
        rss1 = server.rss_bytes()

        polls0, answered0 = fleet.requests["poll"], fleet.polls_answered
        group = BotGroup(fleet, bots)
        await group.handshake_all(concurrency=200)
        group.start()
        await wait_until(lambda: fleet.requests["poll"] - polls0 >= bots, within=120.0)
        await asyncio.sleep(SETTLE_SECS)
        rss2 = server.rss_bytes()
        held = (fleet.requests["poll"] - polls0) - (fleet.polls_answered - answered0)
        await group.stop()
    return {
        "tasks": tasks,
        "bots": bots,
        "create_tasks_per_s": rate(tasks, create_secs),
        "rss_mib_warm": round(rss0 / 2**20, 1),
        "rss_mib_with_tasks": round(rss1 / 2**20, 1),
        "rss_mib_with_tasks_and_bots": round(rss2 / 2**20, 1),
        "bytes_per_pending_task": round((rss1 - rss0) / tasks, 1) if tasks else None,
        "bytes_per_connected_bot": round((rss2 - rss1) / bots, 1) if bots else None,
        "polls_held_at_reading": held,
        "target_bytes_per_task": TARGET_BYTES_PER_TASK,
        "errors": dict(fleet.errors),
    }


async def main(args: argparse.Namespace) -> None:
    """Measures and prints the report."""
    load0 = load_average()
    tasks = args.tasks or (100_000 if args.full else 2_000)
    bots = args.bots or (10_000 if args.full else 500)
    results = await measure_memory(tasks, bots)
    settings = {
        "full": args.full,
        "tasks": tasks,
        "bots": bots,
        "long_poll_secs": LONG_POLL_SECS,
        "max_bot_sleep_time": 1,
        "rss_source": "/proc/<pid>/status VmRSS",
    }
    emit("b5_memory", settings, results, load0)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="pending tasks M")
    parser.add_argument("--bots", type=int, default=0, help="connected bots B")
    return parser.parse_args()


if __name__ == "__main__":
    run(main, parse_args())
