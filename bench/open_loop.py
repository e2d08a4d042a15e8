"""Open-loop load: tasks submitted on a fixed schedule while bots long-poll (B1, B2).

One server (`long_poll_secs: 40`); K bots handshake and park in held polls;
a warm-up pays first-use costs; then, at each target rate in turn, tasks
are submitted on a fixed schedule (task i at start + i / rate, not waiting
for earlier answers) and each bot completes what it is given at once. A
task's submit-to-start latency runs from just before its POST
/api/v1/tasks to the moment a bot receives the `run` answer for it, and
submit-to-done to the moment its task_update is accepted; all are read on
this process's perf_counter, so one clock measures both ends.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from figures import CpuMeter, Json, latency_summary, per, rate
from profiles import profile_summary
from reports import wait_until
from server_process import Server, drover
from sim_bots import BotGroup, Fleet
from task_api import bot_version, submit_at_rate, task_body

LONG_POLL_SECS = 40
SETTINGS = {"long_poll_secs": LONG_POLL_SECS}
# Tasks run before measuring, so first-use costs (queue creation, caches) are paid.
WARMUP_TASKS = 20
# Time for every bot to be back in a held poll before the next rate starts.
SETTLE_SECS = 0.5
# A rate past what the server sustains leaves a backlog; it is drained (at
# no less than this many tasks/s, or the rate's row says it is not) before
# the next rate starts, so that each row measures its own rate alone.
DRAIN_FLOOR_PER_S = 50.0


def _body(i: int) -> Json:
    return task_body(f"open-loop-{i}")


# Per task: when its create was sent and when its bot received it, on perf_counter.
Timings = dict[str, tuple[float, float]]


async def measure_rate(
    server: Server, fleet: Fleet, target: float, secs: float
) -> tuple[Json, Timings]:
    """Submits at `target` tasks/s for `secs` while the fleet's bots poll.

    Returns that rate's figures, and each started task's send and start times.
    """
    requests0, completed0 = fleet.total_requests, fleet.completed
    server_cpu, client_cpu = CpuMeter([server.pid]), CpuMeter(own=True)
    sub = await submit_at_rate(fleet.http, server.url, target, secs, _body)
    done_at, started_at = fleet.done_at, fleet.started_at
    within = max(30.0, secs, len(sub.sent_at) / DRAIN_FLOOR_PER_S)
    # A count, not a look-up of every task: this runs every few ms beside the bots.
    wanted = completed0 + len(sub.sent_at)
    await wait_until(lambda: fleet.completed >= wanted, within=within)
    server_cpu.stop()
    client_cpu.stop()
    ends = [done_at[t] for t in sub.sent_at if t in done_at]
    elapsed = (max(ends) if ends else time.perf_counter()) - sub.started
    requests = fleet.total_requests - requests0
    timings = {t: (s, started_at[t]) for t, s in sub.sent_at.items() if t in started_at}
    row = {
        "target_tasks_per_s": target,
        "tasks": len(sub.sent_at),
        "submitted_per_s": sub.submitted_per_s,
        "submit_lag_max_ms": sub.lag_max_ms,
        "completed": len(ends),
        "completed_per_s": rate(len(ends), elapsed),
        "submit_to_start": latency_summary([start - sent for sent, start in timings.values()]),
        "submit_to_done": latency_summary(
            [done_at[t] - s for t, s in sub.sent_at.items() if t in done_at]
        ),
        # The bots' calls and the submit itself.
        "http_requests_per_task": per(requests + len(sub.sent_at), len(ends), digits=2),
        "server_cpu_ms_per_task": per(server_cpu.seconds(), len(ends), 1000),
        "server_cpu_busy": server_cpu.busy(elapsed),
        "client_cpu_busy": client_cpu.busy(elapsed),
    }
    return row, timings


async def measure_open_loop(
    rates: list[float],
    secs: float,
    bots: int,
    *,
    claim: bool = False,
    profile: bool = False,
    parts: bool = False,
) -> Json:
    """Every rate's figures with `bots` long-polling bots, on one server.

    With `profile` the server runs in cProfile and `server_profile` gives the
    top of its profile per task submitted. With `parts` the server stamps
    each task's way through it (bench/stamped_serve.py) and each rate's
    `submit_to_start_parts` splits the latency (start_parts).
    """
    with tempfile.TemporaryDirectory(prefix="drover-open-loop-") as tmp:
        root = Path(tmp)
        timings: list[Timings] = []
        async with drover(SETTINGS, root=root, profile=profile, stamps=parts) as (server, http):
            version = await bot_version(http, server.url)
            fleet = Fleet(http, server.url, version, LONG_POLL_SECS, claim=claim)
            group = BotGroup(fleet, bots)
            await group.handshake_all()
            group.start()
            warm = await submit_at_rate(http, server.url, 50, WARMUP_TASKS / 50, _body)
            await wait_until(lambda: fleet.completed >= len(warm.sent_at), within=60.0)
            rows = []
            for target in rates:
                await asyncio.sleep(SETTLE_SECS)
                row, timed = await measure_rate(server, fleet, target, secs)
                rows.append(row)
                timings.append(timed)
            failures = group.failures()
            await group.stop()
        out: Json = {"bots": bots, "claim": claim, "rates": rows, "errors": dict(fleet.errors)}
        out["bot_failures"] = failures[:3]
        if server.profile_path is not None and server.profile_path.exists():
            tasks = sum(row["tasks"] for row in rows) + len(warm.sent_at)
            out["server_profile"] = profile_summary(server.profile_path, tasks, server.sql_counts())
        if server.stamps_path is not None:
            stamps = json.loads(server.stamps_path.read_text())
            for row, timed in zip(rows, timings, strict=True):
                row["submit_to_start_parts"] = start_parts(timed, stamps)
    return out


def start_parts(timings: Timings, stamps: Json) -> Json:
    """Where each task's submit-to-start went, from the server's stamps on the same clock.

    - `to_server`: from the send to the create call entering the server's
      app: the client's send, the kernel, the server's wake-up and HTTP parsing;
    - `in_server`: from there to the answer that carried the task to its
      bot being written: the create's work and the hand-over;
    - `to_bot`: from there to the bot holding the answer: the write, the
      kernel, the client's wake-up and its reading of the answer.
    `slowest_1pct_mean_ms` is each part's mean over the 1% of tasks slowest
    in all, which says which part the tail is made of.
    """
    split = []
    for task_id, (sent, started) in timings.items():
        stamp = stamps.get(task_id, {})
        if "entered" in stamp and "poll_answered" in stamp:
            entered, answered = stamp["entered"], stamp["poll_answered"]
            split.append((started - sent, entered - sent, answered - entered, started - answered))
    if not split:
        return {"tasks": 0, "unstamped": len(timings)}
    names = ("total", "to_server", "in_server", "to_bot")
    slowest = sorted(split)[-max(1, len(split) // 100) :]
    return {
        "tasks": len(split),
        "unstamped": len(timings) - len(split),
        **{name: latency_summary([s[i] for s in split]) for i, name in enumerate(names[1:], 1)},
        "slowest_1pct_mean_ms": {
            name: round(1000 * sum(s[i] for s in slowest) / len(slowest), 3)
            for i, name in enumerate(names)
        },
    }
