"""B3: the cost of an idle fleet: K bots long-polling with no work, for a while.

For each fleet size K: a fresh server (`long_poll_secs: 40`,
`max_bot_sleep_time: 1`); K simulated bots in a few client processes
(bench/bot_fleet.py, 5,000 bots each unless --client-procs says otherwise)
handshake, then start polling with their starts spread over `--spread`
seconds (by default one poll cycle, 41 s, so polls arrive at even phases
as in a real fleet, not in one burst every 41 s). Once every bot's first
poll is in, the server's CPU seconds (utime + stime from /proc/<pid>/stat)
and the bots' requests are counted over `--secs` seconds. The smoke run
has a 10 s window, which sees about a quarter of a poll cycle.

    .venv/bin/python bench/b3_idle.py [--full] [--sizes 1000 10000] [--secs 60]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bot_fleet import BotProcesses
from figures import CpuMeter, Json, per, rate
from reports import base_args, run, sized
from server_process import drover
from task_api import bot_version

LONG_POLL_SECS = 40
SETTINGS = {"long_poll_secs": LONG_POLL_SECS}
# A bot in steady state polls once per hold plus its one-second sleep.
POLL_CYCLE_SECS = LONG_POLL_SECS + 1
# The target: 10,000 idle bots cost under 10% of one core.
TARGET_CORE_FRACTION = 0.10
# How long after the spread every bot's first poll may take to arrive.
FIRST_POLL_SECS = 120.0


async def measure_idle(bots: int, secs: float, spread: float, procs: int) -> Json:
    """Server CPU and request rate of `bots` idle bots over `secs` seconds."""
    async with drover(SETTINGS) as (server, http):
        version = await bot_version(http, server.url)
        fleet = BotProcesses(server.url, version, bots, long_poll_secs=LONG_POLL_SECS, procs=procs)
        start = time.perf_counter()
        try:
            ready = await fleet.start()
            handshake_secs = time.perf_counter() - start
            rss_connected = server.rss_bytes()
            await fleet.poll(spread)
            # Every bot's first poll is in (held) before the window opens.
            stats = await fleet.wait_for(
                lambda s: s["requests"].get("poll", 0) >= bots, within=spread + FIRST_POLL_SECS
            )
            requests0, polls0 = sum(stats["requests"].values()), stats["requests"].get("poll", 0)
            server_cpu = CpuMeter([server.pid])
            client_cpu = CpuMeter(fleet.pids)
            start = time.perf_counter()
            await asyncio.sleep(secs)
            server_cpu.stop()
            client_cpu.stop()
            elapsed = time.perf_counter() - start
            stats = await fleet.stats()
            rss = server.rss_bytes()
        finally:
            final = await fleet.stop()
    # The server has stopped here: how long it took to, with the fleet just gone.
    requests = sum(stats["requests"].values()) - requests0
    polls = stats["requests"].get("poll", 0) - polls0
    return {
        "bots": bots,
        "client_procs": ready["procs"],
        "window_secs": round(elapsed, 3),
        "handshakes_per_s": rate(bots, handshake_secs),
        "server_cpu_secs": round(server_cpu.seconds(), 3),
        "server_core_fraction": server_cpu.busy(elapsed),
        "requests_per_s": rate(requests, elapsed),
        "polls_per_s": rate(polls, elapsed),
        "expected_polls_per_s": rate(bots, POLL_CYCLE_SECS),
        "polls_held_at_end": stats["polls_in_flight"],
        "server_cpu_us_per_request": per(server_cpu.seconds(), requests, 1e6, 1),
        "server_rss_mib": round(rss / 2**20, 1),
        "server_rss_mib_after_handshakes": round(rss_connected / 2**20, 1),
        "server_stop_secs": server.stop_secs,
        "client_cpu_busy": client_cpu.busy(elapsed),
        "client_loop_lag_ms_max": stats["loop_lag_ms_max"],
        "errors": final.get("errors", {}),
        "bot_failures": final.get("bot_failures", 0),
        "target_core_fraction_at_10000": TARGET_CORE_FRACTION,
    }


async def main(args: argparse.Namespace) -> Json:
    """Measures every fleet size."""
    fleets = [await measure_idle(k, args.secs, args.spread, args.client_procs) for k in args.sizes]
    return {"fleets": fleets}


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--sizes", type=int, nargs="*", help="fleet sizes K")
    parser.add_argument("--secs", type=float, default=0.0, help="measured window per size")
    parser.add_argument(
        "--spread", type=float, default=-1.0, help="seconds over which bots start polling"
    )
    parser.add_argument(
        "--client-procs", type=int, default=0, help="client processes (0: one per 5,000 bots)"
    )
    args = parser.parse_args()
    args = sized(
        args, sizes=([200, 1000], [1000, 10000]), secs=(10.0, 60.0), max_secs=(600.0, 1800.0)
    )
    args.spread = args.spread if args.spread >= 0 else float(POLL_CYCLE_SECS)
    return args


if __name__ == "__main__":
    run("b3_idle", main, parse_args(), SETTINGS)
