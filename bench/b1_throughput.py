"""B1: end-to-end throughput of no-op tasks through simulated bots (DESIGN.md 11).

Drain mode: N tasks are created first, K bots handshake, then the clock
starts and the bots poll, (optionally) claim and complete until every task
is COMPLETED. Open loop: K bots long-poll while tasks are submitted at a
fixed target rate for a fixed time; the report shows what was achieved.
Both count the HTTP requests each task cost (bot calls plus the submit).

    .venv/bin/python bench/b1_throughput.py [--full] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import (
    BotGroup,
    Fleet,
    Json,
    Server,
    base_args,
    bot_version,
    count_tasks,
    create_tasks,
    drover,
    emit,
    latency_summary,
    load_average,
    own_cpu_seconds,
    profile_summary,
    rate,
    run,
    submit_at_rate,
    task_body,
    wait_until,
)

LONG_POLL_SECS = 40
SETTINGS = {"long_poll_secs": LONG_POLL_SECS, "max_bot_sleep_time": 1}


async def measure_drain(tasks: int, bots: int, *, claim: bool, profile: bool = False) -> Json:
    """Creates `tasks` no-op tasks, then drains them through `bots` bots; returns figures."""
    with tempfile.TemporaryDirectory(prefix="drover-b1-") as tmp:
        root = Path(tmp)
        async with drover(SETTINGS, root=root, profile=profile) as (server, http):
            version = await bot_version(http, server.url)
            start = time.perf_counter()
            await create_tasks(http, server.url, tasks, lambda i: task_body(f"noop-{i}"))
            create_secs = time.perf_counter() - start
            fleet = Fleet(http, server.url, version, LONG_POLL_SECS, claim=claim)
            done: list[float] = []
            fleet.on_done = lambda _run_id, t: done.append(t)
            group = BotGroup(fleet, bots)
            await group.handshake_all()
            requests0, cpu0, own0 = fleet.total_requests, server.cpu_seconds(), own_cpu_seconds()
            start = time.perf_counter()
            group.start()
            finished = await wait_until(
                lambda: fleet.completed >= tasks or len(group.failures()) == bots,
                within=max(60.0, tasks / 20),
            )
            elapsed = (done[-1] if done else time.perf_counter()) - start
            cpu = server.cpu_seconds() - cpu0
            own = own_cpu_seconds() - own0
            requests = fleet.total_requests - requests0
            by_kind = dict(fleet.requests)
            await group.stop()
            completed = await count_tasks(http, server.url, "COMPLETED")
        figures: Json = {
            "tasks": tasks,
            "bots": bots,
            "claim": claim,
            "finished": finished,
            "completed_by_server": completed,
            "create_tasks_per_s": rate(tasks, create_secs),
            "drain_secs": round(elapsed, 3),
            "tasks_per_s": rate(len(done), elapsed),
            # From the first completion to the last: the figure peers.py compares.
            "steady_tasks_per_s": rate(len(done) - 1, done[-1] - done[0]) if len(done) > 1 else 0,
            "bot_requests_per_task": round(requests / max(len(done), 1), 2),
            "http_requests_per_task": round(requests / max(len(done), 1) + 1, 2),
            "bot_requests_by_kind": by_kind,
            "server_cpu_secs": round(cpu, 3),
            "server_cpu_ms_per_task": round(1000 * cpu / max(len(done), 1), 3),
            "server_cpu_busy": round(cpu / elapsed, 3) if elapsed > 0 else 0,
            "client_cpu_busy": round(own / elapsed, 3) if elapsed > 0 else 0,
            "errors": dict(fleet.errors),
            "bot_failures": group.failures()[:3],
        }
        if server.profile_path is not None and server.profile_path.exists():
            figures["server_profile"] = profile_summary(server.profile_path, per=tasks)
        return figures


async def measure_open_loop(
    rates: list[float], secs: float, bots: int, *, claim: bool
) -> list[Json]:
    """Submits at each target rate for `secs` while `bots` bots long-poll; one server."""
    out: list[Json] = []
    async with drover(SETTINGS) as (server, http):
        version = await bot_version(http, server.url)
        fleet = Fleet(http, server.url, version, LONG_POLL_SECS, claim=claim)
        done_at: dict[str, float] = {}
        started_at: dict[str, float] = {}
        fleet.on_run = lambda run_id, t: started_at.__setitem__(run_id[:-1] + "0", t)
        fleet.on_done = lambda run_id, t: done_at.__setitem__(run_id[:-1] + "0", t)
        group = BotGroup(fleet, bots)
        await group.handshake_all()
        group.start()
        await asyncio.sleep(0.5)
        for target in rates:
            out.append(await _one_rate(server, fleet, started_at, done_at, target, secs))
        await group.stop()
    return out


async def _one_rate(
    server: Server,
    fleet: Fleet,
    started_at: dict[str, float],
    done_at: dict[str, float],
    target: float,
    secs: float,
) -> Json:
    requests0, cpu0, own0 = fleet.total_requests, server.cpu_seconds(), own_cpu_seconds()
    sub = await submit_at_rate(
        fleet.http, server.url, target, secs, lambda i: task_body(f"open-{target}-{i}")
    )
    await wait_until(lambda: all(t in done_at for t in sub.sent_at), within=30.0)
    ends = [done_at[t] for t in sub.sent_at if t in done_at]
    end = max(ends) if ends else time.perf_counter()
    completed = len(ends)
    requests = fleet.total_requests - requests0
    cpu = server.cpu_seconds() - cpu0
    own = own_cpu_seconds() - own0
    elapsed = end - sub.started
    return {
        "target_tasks_per_s": target,
        "tasks": len(sub.sent_at),
        "submitted_per_s": rate(len(sub.sent_at), sub.ended - sub.started),
        "submit_lag_max_ms": sub.lag_max_ms,
        "completed": completed,
        "completed_per_s": rate(completed, elapsed),
        "submit_to_start": latency_summary(
            [started_at[t] - s for t, s in sub.sent_at.items() if t in started_at]
        ),
        "submit_to_done": latency_summary(
            [done_at[t] - s for t, s in sub.sent_at.items() if t in done_at]
        ),
        "http_requests_per_task": round(requests / max(completed, 1) + 1, 2),
        "server_cpu_ms_per_task": round(1000 * cpu / max(completed, 1), 3),
        "server_cpu_busy": round(cpu / elapsed, 3) if elapsed > 0 else 0,
        "client_cpu_busy": round(own / elapsed, 3) if elapsed > 0 else 0,
    }


async def main(args: argparse.Namespace) -> None:
    """Runs drain and open loop at the chosen sizes and prints the report."""
    load0 = load_average()
    tasks = args.tasks or (20_000 if args.full else 1_000)
    rates = args.rates or ([500.0, 1000.0, 2000.0] if args.full else [200.0, 500.0])
    secs = args.secs or (10.0 if args.full else 3.0)
    drain = await measure_drain(tasks, args.bots, claim=args.claim, profile=args.profile)
    open_loop = await measure_open_loop(rates, secs, args.bots, claim=args.claim)
    settings = {
        "full": args.full,
        "tasks": tasks,
        "bots": args.bots,
        "claim": args.claim,
        "open_loop_rates": rates,
        "open_loop_secs": secs,
        "long_poll_secs": LONG_POLL_SECS,
        "max_bot_sleep_time": 1,
        "profile": args.profile,
    }
    emit("b1_throughput", settings, {"drain": drain, "open_loop": open_loop}, load0)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="drain size N")
    parser.add_argument("--bots", type=int, default=8, help="simulated bots K")
    parser.add_argument("--claim", action="store_true", help="bots call claim before running")
    parser.add_argument("--rates", type=float, nargs="*", help="open-loop submit rates, tasks/s")
    parser.add_argument("--secs", type=float, default=0.0, help="open-loop time per rate")
    parser.add_argument("--profile", action="store_true", help="run the drain's server in cProfile")
    return parser.parse_args()


if __name__ == "__main__":
    run(main, parse_args())
