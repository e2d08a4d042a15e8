"""B3: the cost of an idle fleet: K bots long-polling with no work, for a while.

For each fleet size K: a fresh server (`long_poll_secs: 40`,
`max_bot_sleep_time: 1`), K bots handshake, then start polling with their
starts spread over `--spread` seconds (by default one poll cycle, 41 s, so
polls arrive at even phases as in a real fleet, not in one burst every
41 s), then the server's CPU seconds (utime + stime from /proc/<pid>/stat)
and the bots' requests are counted over `--secs` seconds. The smoke run
has a 10 s window, which sees about a quarter of a poll cycle.

    .venv/bin/python bench/b3_idle.py [--full] [--sizes 1000 10000] [--secs 60]
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
    drover,
    emit,
    load_average,
    own_cpu_seconds,
    rate,
    run,
    wait_until,
)

LONG_POLL_SECS = 40
MAX_BOT_SLEEP = 1
SETTINGS = {"long_poll_secs": LONG_POLL_SECS, "max_bot_sleep_time": MAX_BOT_SLEEP}
# The target: 10,000 idle bots cost under 10% of one core.
TARGET_CORE_FRACTION = 0.10


async def measure_idle(bots: int, secs: float, spread: float) -> Json:
    """Server CPU and request rate of `bots` idle bots over `secs` seconds."""
    async with drover(SETTINGS) as (server, http):
        version = await bot_version(http, server.url)
        fleet = Fleet(http, server.url, version, LONG_POLL_SECS)
        group = BotGroup(fleet, bots)
        start = time.perf_counter()
        await group.handshake_all(concurrency=200)
        handshake_secs = time.perf_counter() - start
        rss_connected = server.rss_bytes()
        group.start(spread_secs=spread)
        # Every bot's first poll is in (held) before the window opens.
        await asyncio.sleep(spread)
        await wait_until(lambda: fleet.requests["poll"] >= bots, within=60.0)
        await asyncio.sleep(1.0)
        requests0, polls0 = fleet.total_requests, fleet.requests["poll"]
        cpu0, own0 = server.cpu_seconds(), own_cpu_seconds()
        start = time.perf_counter()
        await asyncio.sleep(secs)
        elapsed = time.perf_counter() - start
        cpu = server.cpu_seconds() - cpu0
        own = own_cpu_seconds() - own0
        requests = fleet.total_requests - requests0
        polls = fleet.requests["poll"] - polls0
        rss = server.rss_bytes()
        await group.stop()
    core = cpu / elapsed
    return {
        "bots": bots,
        "window_secs": round(elapsed, 3),
        "handshakes_per_s": rate(bots, handshake_secs),
        "server_cpu_secs": round(cpu, 3),
        "server_core_fraction": round(core, 4),
        "requests_per_s": rate(requests, elapsed),
        "polls_per_s": rate(polls, elapsed),
        # A bot in steady state polls once per hold plus its sleep.
        "expected_polls_per_s": rate(bots, LONG_POLL_SECS + MAX_BOT_SLEEP),
        "server_cpu_us_per_request": round(1e6 * cpu / requests, 1) if requests else None,
        "server_rss_mib": round(rss / 2**20, 1),
        "server_rss_mib_after_handshakes": round(rss_connected / 2**20, 1),
        "client_cpu_busy": round(own / elapsed, 3),
        "errors": dict(fleet.errors),
        "bot_failures": group.failures()[:3],
        "target_core_fraction_at_10000": TARGET_CORE_FRACTION,
    }


async def main(args: argparse.Namespace) -> None:
    """Measures every fleet size and prints the report."""
    load0 = load_average()
    sizes = args.sizes or ([1000, 10000] if args.full else [200, 1000])
    secs = args.secs or (60.0 if args.full else 10.0)
    spread = args.spread if args.spread >= 0 else float(LONG_POLL_SECS + MAX_BOT_SLEEP)
    results = [await measure_idle(k, secs, spread) for k in sizes]
    settings = {
        "full": args.full,
        "sizes": sizes,
        "secs": secs,
        "spread_secs": spread,
        "long_poll_secs": LONG_POLL_SECS,
        "max_bot_sleep_time": MAX_BOT_SLEEP,
    }
    emit("b3_idle", settings, {"fleets": results}, load0)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--sizes", type=int, nargs="*", help="fleet sizes K")
    parser.add_argument("--secs", type=float, default=0.0, help="measured window per size")
    parser.add_argument(
        "--spread", type=float, default=-1.0, help="seconds over which bots start polling"
    )
    return parser.parse_args()


if __name__ == "__main__":
    run(main, parse_args())
