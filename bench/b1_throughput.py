"""B1: end-to-end throughput of no-op tasks through simulated bots (DESIGN.md 11).

Drain mode: N tasks are created first, K bots handshake, then the clock
starts and the bots poll, (optionally) claim and complete until every task
is COMPLETED. Open loop (bench/open_loop.py): K bots long-poll while tasks
are submitted at fixed target rates; the report shows what was achieved.
Both count the HTTP requests each task cost (the bots' calls and the submit).
With --profile the drain's server runs in cProfile, and the report adds the
top of its profile and its SQLite statements per task, for the creation and
for the drain apart. With --instructions the drain's server and the HTTP
floor's run under valgrind's callgrind (bench/callgrind.py), and the report
adds the instructions each server executed per task during its drain, and
Drover's as a multiple of the floor's; the open loop is skipped then.

    .venv/bin/python bench/b1_throughput.py [--full] [--tasks N] [--bots K] [--profile]
    .venv/bin/python bench/b1_throughput.py --tasks 300 --instructions
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import callgrind
import http_floor
from figures import CpuMeter, Json, per, rate, ratio
from open_loop import LONG_POLL_SECS, SETTINGS, measure_open_loop
from profiles import profile_summary
from reports import base_args, run, sized, wait_until
from server_process import (
    Server,
    drover,
    free_port,
    http_session,
    spawn,
    stop_server,
    wait_ready,
)
from sim_bots import BotGroup, Fleet
from task_api import bot_version, count_tasks, create_tasks, task_body


def _sql_per_task(counts: Json, before: Json, tasks: int) -> Json:
    """SQLite statements per task between two counts, by kind and in all."""
    kinds = {k: v - before.get(k, 0) for k, v in counts.items() if v - before.get(k, 0)}
    return {
        "all": per(sum(kinds.values()), tasks, digits=2),
        **{k: per(v, tasks, digits=2) for k, v in sorted(kinds.items())},
    }


async def measure_drain(
    tasks: int,
    bots: int,
    *,
    claim: bool,
    profile: bool = False,
    profile_out: Path | None = None,
    under_callgrind: bool = False,
) -> Json:
    """Creates `tasks` no-op tasks, then drains them through `bots` bots; returns figures.

    With `profile`, the server runs in cProfile; `profile_out` keeps its
    dump. With `under_callgrind`, it runs under callgrind.
    """
    with tempfile.TemporaryDirectory(prefix="drover-b1-") as tmp:
        root = Path(tmp)
        async with drover(
            SETTINGS, root=root, profile=profile, under_callgrind=under_callgrind
        ) as (server, http):
            version = await bot_version(http, server.url)
            start = time.perf_counter()
            await create_tasks(http, server.url, tasks, lambda i: task_body(f"noop-{i}"))
            create_secs = time.perf_counter() - start
            fleet = Fleet(http, server.url, version, LONG_POLL_SECS, claim=claim)
            sql_created = await server.sql_counts_now()
            drained = await timed_drain(server, fleet, bots, tasks)
            completed = await count_tasks(http, server.url, "COMPLETED")
        figures: Json = {
            "tasks": tasks,
            "bots": bots,
            "claim": claim,
            "finished": drained.pop("finished"),
            "completed_by_server": completed,
            "create_tasks_per_s": rate(tasks, create_secs),
            **drained,
        }
        # The submits are HTTP requests too.
        figures["http_requests_per_task"] = per(
            figures["bot_requests"] + tasks, max(fleet.completed, 1), digits=2
        )
        if server.profile_path is not None and server.profile_path.exists():
            figures["server_profile"] = _profile(server, tasks, sql_created)
            if profile_out is not None:
                shutil.copyfile(server.profile_path, profile_out)
        return figures


async def measure_floor(tasks: int, bots: int, *, under_callgrind: bool = False) -> Json:
    """Drains `tasks` through `bots` bots served by the HTTP floor (bench/http_floor.py)."""
    with tempfile.TemporaryDirectory(prefix="drover-b1-floor-") as tmp:
        port = free_port()
        command = http_floor.command(port, tasks)
        floor = spawn(command, Path(tmp), port, under_callgrind=under_callgrind)
        try:
            async with http_session() as http:
                await wait_ready(floor, http)
                fleet = Fleet(http, floor.url, "floor", LONG_POLL_SECS)
                drained = await timed_drain(floor, fleet, bots, tasks)
        finally:
            await stop_server(floor)
    return {"tasks": tasks, "bots": bots, **drained}


async def timed_drain(server: Server, fleet: Fleet, bots: int, tasks: int) -> Json:
    """Handshakes `bots` bots, then times them until `tasks` tasks are done."""
    group = BotGroup(fleet, bots)
    await group.handshake_all()
    requests0 = fleet.total_requests
    counting = (
        callgrind.counted(server.pid, server.callgrind_out)
        if server.callgrind_out is not None
        else contextlib.nullcontext()
    )
    with counting as count:
        server_cpu, client_cpu = CpuMeter([server.pid]), CpuMeter(own=True)
        start = time.perf_counter()
        group.start()
        finished = await wait_until(
            lambda: fleet.completed >= tasks or len(group.failures()) == bots,
            within=max(60.0, tasks / 20),
        )
        server_cpu.stop()
        client_cpu.stop()
    done = sorted(fleet.done_at.values())
    elapsed = (done[-1] if done else time.perf_counter()) - start
    requests = fleet.total_requests - requests0
    by_kind = dict(fleet.requests)
    failures = group.failures()
    await group.stop()
    instructions: Json = {}
    if count is not None:
        # Under valgrind the times and CPU figures are valgrind's, not the server's.
        instructions = {
            "server_instructions_per_task": per(count.instructions, len(done), digits=0),
            "callgrind_dump": str(count.dump),
        }
    return {
        "finished": finished,
        "drain_secs": round(elapsed, 3),
        "tasks_per_s": rate(len(done), elapsed),
        # From the first completion to the last: the figure peers.py compares.
        "steady_tasks_per_s": rate(len(done) - 1, done[-1] - done[0]) if len(done) > 1 else 0,
        "bot_requests": requests,
        "bot_requests_per_task": per(requests, len(done), digits=2),
        "bot_requests_by_kind": by_kind,
        "server_cpu_secs": round(server_cpu.seconds(), 3),
        "server_cpu_ms_per_task": per(server_cpu.seconds(), len(done), 1000),
        "server_cpu_busy": server_cpu.busy(elapsed),
        "client_cpu_busy": client_cpu.busy(elapsed),
        "errors": dict(fleet.errors),
        "bot_failures": failures[:3],
        **instructions,
    }


def _profile(server: Server, tasks: int, sql_created: Json) -> Json:
    assert server.profile_path is not None
    counts = server.sql_counts()
    summary = profile_summary(server.profile_path, tasks, counts)
    summary["sqlite_statements_per_task_create"] = _sql_per_task(sql_created, {}, tasks)
    summary["sqlite_statements_per_task_drain"] = _sql_per_task(counts, sql_created, tasks)
    return summary


async def main(args: argparse.Namespace) -> Json:
    """Runs the drain and the open loop at the chosen sizes."""
    drain = await measure_drain(
        args.tasks,
        args.bots,
        claim=args.claim,
        profile=args.profile or args.profile_out is not None,
        profile_out=args.profile_out,
        under_callgrind=args.instructions,
    )
    results: Json = {"drain": drain}
    if not args.no_floor:
        floor = await measure_floor(args.tasks, args.bots, under_callgrind=args.instructions)
        results["http_floor"] = {
            **floor,
            # Drover's drain as a fraction of what HTTP alone allows here.
            "drover_ratio": ratio(drain["steady_tasks_per_s"], floor["steady_tasks_per_s"]),
        }
        if args.instructions:
            results["http_floor"]["drover_instructions_ratio"] = ratio(
                drain["server_instructions_per_task"], floor["server_instructions_per_task"]
            )
    if args.rates and not args.instructions:
        results["open_loop"] = await measure_open_loop(
            args.rates, args.secs, args.bots, claim=args.claim
        )
    return results


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="drain size N")
    parser.add_argument("--bots", type=int, default=8, help="simulated bots K")
    parser.add_argument("--claim", action="store_true", help="bots call claim before running")
    parser.add_argument(
        "--rates", type=float, nargs="*", help="open-loop submit rates, tasks/s (none: skip)"
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the drain through bench/http_floor.py"
    )
    parser.add_argument("--secs", type=float, default=0.0, help="open-loop time per rate")
    parser.add_argument("--profile", action="store_true", help="run the drain's server in cProfile")
    parser.add_argument(
        "--profile-out",
        type=Path,
        help="keep the drain server's cProfile dump here (implies --profile)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="run the servers under valgrind's callgrind; count their instructions per task",
    )
    args = parser.parse_args()
    args = sized(args, tasks=(1_000, 20_000), secs=(3.0, 10.0), max_secs=(600.0, 3600.0))
    if args.rates is None:
        args.rates = [500.0, 1000.0, 2000.0] if args.full else [200.0, 500.0]
    return args


if __name__ == "__main__":
    run("b1_throughput", main, parse_args(), SETTINGS)
