"""B2: submit-to-start latency at fixed submit rates with idle bots long-polling.

K bots handshake and park in held polls (`long_poll_secs: 40`). Tasks are
then submitted on a fixed schedule (open loop) at each rate in turn. A task's
latency runs from just before its POST /api/v1/tasks to the moment a bot
receives the `run` answer for it, both read on this process's perf_counter,
so one clock measures both ends. The bot completes each task at once.

    .venv/bin/python bench/b2_latency.py [--full] [--rates 50 100 200] [--bots K]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
from pathlib import Path

from common import (
    BotGroup,
    Fleet,
    Json,
    Server,
    base_args,
    bot_version,
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
# Tasks run before measuring, so first-use costs (queue creation, caches) are paid.
WARMUP_TASKS = 20


async def measure_latency(
    rates: list[float], secs: float, bots: int, *, profile: bool = False
) -> list[Json]:
    """Submit-to-start latency at each rate, with `bots` long-polling bots; one server.

    With `profile` the server runs in cProfile and a last entry gives the top
    of its profile, per task submitted.
    """
    out: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="drover-b2-") as tmp:
        server = await _measure(Path(tmp), rates, secs, bots, out, profile=profile)
        if server.profile_path is not None and server.profile_path.exists():
            total = sum(e.get("tasks", 0) for e in out)
            out.append({"server_profile": profile_summary(server.profile_path, per=total)})
    return out


async def _measure(
    root: Path, rates: list[float], secs: float, bots: int, out: list[Json], *, profile: bool
) -> Server:
    async with drover(SETTINGS, root=root, profile=profile) as (server, http):
        version = await bot_version(http, server.url)
        fleet = Fleet(http, server.url, version, LONG_POLL_SECS)
        started_at: dict[str, float] = {}
        fleet.on_run = lambda run_id, t: started_at.__setitem__(run_id[:-1] + "0", t)
        group = BotGroup(fleet, bots)
        await group.handshake_all()
        group.start()
        warm = await submit_at_rate(http, server.url, 50, WARMUP_TASKS / 50, _body)
        await wait_until(lambda: fleet.completed >= len(warm.sent_at), within=30.0)
        for target in rates:
            # Every bot back in a held poll before the next rate starts.
            await asyncio.sleep(0.5)
            completed0, requests0 = fleet.completed, fleet.total_requests
            cpu0, own0 = server.cpu_seconds(), own_cpu_seconds()
            sub = await submit_at_rate(http, server.url, target, secs, _body)
            wanted = completed0 + len(sub.sent_at)
            await wait_until(functools.partial(_reached, fleet, wanted), within=max(30.0, secs))
            elapsed = max(sub.ended - sub.started, 1e-9)
            latencies = [started_at[t] - s for t, s in sub.sent_at.items() if t in started_at]
            cpu = server.cpu_seconds() - cpu0
            own = own_cpu_seconds() - own0
            out.append(
                {
                    "target_tasks_per_s": target,
                    "tasks": len(sub.sent_at),
                    "submitted_per_s": rate(len(sub.sent_at), elapsed),
                    "submit_lag_max_ms": sub.lag_max_ms,
                    "started": len(latencies),
                    "submit_to_start": latency_summary(latencies),
                    "bot_requests_per_task": round(
                        (fleet.total_requests - requests0) / max(len(latencies), 1), 2
                    ),
                    "server_cpu_busy": round(cpu / elapsed, 3),
                    "client_cpu_busy": round(own / elapsed, 3),
                }
            )
        errors = dict(fleet.errors)
        await group.stop()
    if errors:
        out.append({"errors": errors})
    return server


def _reached(fleet: Fleet, completed: int) -> bool:
    return fleet.completed >= completed


def _body(i: int) -> Json:
    return task_body(f"latency-{i}")


async def main(args: argparse.Namespace) -> None:
    """Measures every rate and prints the report."""
    load0 = load_average()
    rates = args.rates or [50.0, 100.0, 200.0]
    secs = args.secs or (20.0 if args.full else 3.0)
    results = await measure_latency(rates, secs, args.bots, profile=args.profile)
    settings = {
        "full": args.full,
        "rates": rates,
        "secs_per_rate": secs,
        "bots": args.bots,
        "long_poll_secs": LONG_POLL_SECS,
        "max_bot_sleep_time": 1,
        "warmup_tasks": WARMUP_TASKS,
        "profile": args.profile,
    }
    emit("b2_latency", settings, {"rates": results}, load0)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--rates", type=float, nargs="*", help="submit rates, tasks/s")
    parser.add_argument("--secs", type=float, default=0.0, help="time per rate")
    parser.add_argument("--bots", type=int, default=20, help="idle long-polling bots K")
    parser.add_argument("--profile", action="store_true", help="run the server in cProfile")
    return parser.parse_args()


if __name__ == "__main__":
    run(main, parse_args())
