"""B2: submit-to-start latency at fixed submit rates with idle bots long-polling.

K bots handshake and park in held polls (`long_poll_secs: 40`). Tasks are
then submitted open-loop at each rate in turn (bench/open_loop.py). A
task's latency runs from just before its POST /api/v1/tasks to the moment
a bot receives the `run` answer for it, both read on this process's
perf_counter, so one clock measures both ends. The bot completes each task
at once. With --parts, the server stamps each task on the same clock
(bench/stamped_serve.py) and each rate's figures say how much of the
latency, and of its slowest 1%, was the way to the server, the server's
work, and the way back to the bot.

    .venv/bin/python bench/b2_latency.py [--full] [--rates 50 100 200] [--bots K]
        [--profile | --parts]
"""

from __future__ import annotations

import argparse

from figures import Json
from open_loop import SETTINGS, measure_open_loop
from reports import base_args, run, sized


async def main(args: argparse.Namespace) -> Json:
    """Measures every rate."""
    return await measure_open_loop(
        args.rates, args.secs, args.bots, profile=args.profile, parts=args.parts
    )


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--rates", type=float, nargs="*", help="submit rates, tasks/s")
    parser.add_argument("--secs", type=float, default=0.0, help="time per rate")
    parser.add_argument("--bots", type=int, default=20, help="idle long-polling bots K")
    parser.add_argument("--profile", action="store_true", help="run the server in cProfile")
    parser.add_argument(
        "--parts",
        action="store_true",
        help="split each latency into client-to-server, server and server-to-bot parts",
    )
    args = parser.parse_args()
    if args.profile and args.parts:
        parser.error("--profile and --parts each wrap the server: choose one")
    args.rates = args.rates or [50.0, 100.0, 200.0]
    return sized(args, secs=(3.0, 20.0), max_secs=(600.0, 1800.0))


if __name__ == "__main__":
    run("b2_latency", main, parse_args(), SETTINGS)
