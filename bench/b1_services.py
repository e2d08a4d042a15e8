"""B1 without HTTP: Drover's bot services drained in-process, what each task costs them.

The same drain as bench/b1_throughput.py (N no-op tasks, K bots, each
task one `poll` answered `run` and one completing `task_update`), with the
bot calls made straight to BotService.poll and RunService.task_update of
an app built by create_app over a fresh SQLite state directory, in this
process: no sockets, no HTTP parsing, no JSON bodies. The tasks are created
beforehand through the client API over loopback HTTP (aiohttp's test
server, in this process), and the bots handshake before the clock starts.

What it reports is CPU per task (time.process_time) for the polls and the
task_updates apart, and for the SQLite store's own calls within them (the
time spent in sqlite3's execute). Back-to-back runs agree within a few
percent, much closer than B1's drains, so it weighs a change to the
services or the store against a run of its base just before or after.
B1's drain costs the server this, plus HTTP (bench/http_floor.py), plus
the handlers' reading and writing of JSON bodies.

    .venv/bin/python bench/b1_services.py [--tasks N] [--bots K] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import time
from pathlib import Path
from typing import Any

import callgrind
from figures import Json, per
from in_process import ServiceBot, TimedConnection, bot_version, served_app
from open_loop import SETTINGS
from profiles import profile_summary
from reports import base_args, run, sized
from task_api import task_body


class Meter:
    """CPU seconds of one kind of call, and the store's SQLite share of them."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.sql = 0.0

    def start(self) -> tuple[float, float]:
        return time.process_time(), TimedConnection.seconds

    def stop(self, started: tuple[float, float]) -> None:
        self.cpu += time.process_time() - started[0]
        self.sql += TimedConnection.seconds - started[1]

    def figures(self, tasks: int) -> Json:
        return {
            "cpu_us_per_task": per(self.cpu, tasks, 1e6, digits=1),
            "sqlite_us_per_task": per(self.sql, tasks, 1e6, digits=1),
        }


async def measure(tasks: int, bots: int, profile_to: Path | None) -> Json:
    """Creates `tasks` tasks, then drains them through `bots` in-process bots."""
    async with served_app(SETTINGS) as (app, client):
        for i in range(tasks):
            async with client.post("/api/v1/tasks", json=task_body(f"noop-{i}")) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"create task: {resp.status} {await resp.text()}")
        version = await bot_version(client)
        return await _drain(app, tasks, bots, version, profile_to)


async def _drain(app: Any, tasks: int, bots: int, version: str, profile_to: Path | None) -> Json:
    fleet = [ServiceBot(app, f"bot-{k}", version) for k in range(bots)]
    for bot in fleet:
        await bot.handshake()
    polls, updates = Meter(), Meter()
    profiler = cProfile.Profile() if profile_to else None
    done = calls = 0
    if profiler:
        profiler.enable()
    with callgrind.counted() if callgrind.active() else contextlib.nullcontext() as count:
        while done < tasks and calls < 4 * tasks:
            for bot in fleet:
                if done == tasks:
                    # A poll now would be held until long_poll_secs, waiting for nothing.
                    break
                calls += 1
                started = polls.start()
                reply = await bot.poll()
                polls.stop(started)
                if reply["cmd"] != "run":
                    continue
                started = updates.start()
                await bot.complete(reply["manifest"]["task_id"])
                updates.stop(started)
                done += 1
    if profiler and profile_to:
        profiler.disable()
        profiler.dump_stats(profile_to)
    figures: Json = {
        "tasks": tasks,
        "bots": bots,
        "completed": done,
        "cpu_us_per_task": per(polls.cpu + updates.cpu, done, 1e6, digits=1),
        "sqlite_us_per_task": per(polls.sql + updates.sql, done, 1e6, digits=1),
        "poll": polls.figures(done),
        "task_update": updates.figures(done),
        "polls_per_task": per(calls, done, digits=2),
    }
    if count is not None:
        # Under valgrind the CPU figures above are valgrind's, not the server's.
        figures["instructions_per_task"] = per(count.instructions, done, digits=0)
        figures["callgrind_dump"] = str(count.dump)
    if profile_to:
        figures["profile"] = profile_summary(profile_to, done, {})
    return figures


async def main(args: argparse.Namespace) -> Json:
    """Runs the in-process drain."""
    return await measure(args.tasks, args.bots, args.profile_out)


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="drain size N")
    parser.add_argument("--bots", type=int, default=8, help="in-process bots K")
    parser.add_argument(
        "--profile-out", type=Path, help="profile the drain in cProfile, its dump kept here"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="run under valgrind's callgrind and count the drain's instructions per task",
    )
    return sized(parser.parse_args(), tasks=(2_000, 20_000), max_secs=(300.0, 1800.0))


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.instructions and not callgrind.active():
        callgrind.reexec_under_callgrind()
    run("b1_services", main, arguments, SETTINGS)
