"""B4: a bot's poll latency while more and more tasks that it cannot run are pending.

One state directory serves every depth, in increasing order. Before each
depth the server is stopped and the SQLite file is topped up to that many
pending tasks *through the Store API* (server.store.sqlite.SqliteStore):
one template task per queue is created with the server's own TaskService
(full validation, queue registration), then copies of it with fresh task
IDs and creation times are written with `Store.create_task`, one
transaction each, as the server would. That is far faster than a million
HTTP calls and stores exactly what the API would. The tasks need
`os: Windows-<q>` (spread over `--queues` queues) and wait for capacity;
the bot is `os: Linux`, so it can run none of them.

Then the server starts (`long_poll_secs: 0`: polls answer at once), the bot
handshakes and runs one task it can run (so its own queue exists and the
code paths are warm), and polls `--polls` times in a row; each poll's round
trip is timed. The report gives p50/p99 per depth and their ratio to depth 0.

    .venv/bin/python bench/b4_poll_depth.py [--full] [--depths 0 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sqlite3
import tempfile
import time
from pathlib import Path

from common import (
    BotGroup,
    Fleet,
    Json,
    base_args,
    bot_version,
    create_task,
    drover,
    emit,
    latency_summary,
    load_average,
    rate,
    run,
    task_body,
)

from server import ids
from server.clock import SystemClock
from server.config.live import LiveConfig
from server.model import TaskProperties, TaskRequest, TaskResult, TaskSlice
from server.scheduler.queues import QueueIndex
from server.scheduler.requests import MAX_EXPIRATION_SECS
from server.scheduler.tasks import TaskService
from server.store.sqlite import SqliteStore

SETTINGS = {"long_poll_secs": 0, "max_bot_sleep_time": 1}
# The target: p50/p99 at 1,000,000 pending within 1.5x of the empty case.
TARGET_RATIO = 1.5
# Copies are created one millisecond apart from here on, so their task IDs
# (PROTOCOL.md 4.2) are distinct across top-ups; three days back keeps a
# million of them (1,000 s) in the past and inside the 7-day expiration.
FILL_BASE_TS = time.time() - 3 * 86400


async def fill(state_dir: Path, config_dir: Path, total: int, queues: int) -> Json:
    """Tops the state's pending unrunnable tasks up to `total`; returns how it went."""
    store = await SqliteStore.open(state_dir / "drover.sqlite3")
    # This loader's own connection only: a crash mid-fill loses nothing that matters.
    store.connection.execute("PRAGMA synchronous = OFF")
    try:
        have = store.connection.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        missing = total - have
        if missing <= 0:
            return {"inserted": 0, "insert_per_s": 0.0}
        clock = SystemClock()
        service = TaskService(store, LiveConfig(config_dir, clock=clock), clock, QueueIndex(store))
        templates: list[tuple[TaskRequest, TaskResult]] = []
        for q in range(queues):
            draft = TaskRequest(
                task_id="",
                created_ts=0.0,
                name=f"unrunnable-{q}",
                priority=100,
                slices=[
                    TaskSlice(
                        properties=TaskProperties(
                            command=["true"],
                            dimensions=[("os", f"Windows-{q}"), ("pool", "default")],
                        ),
                        expiration_secs=MAX_EXPIRATION_SECS,
                        wait_for_capacity=True,
                    )
                ],
            )
            templates.append(await service.create(draft))
        start = time.perf_counter()
        for i in range(missing - queues):
            request, result = templates[i % queues]
            created = FILL_BASE_TS + (have + i) / 1000
            task_id = ids.new_task_id(created)
            await store.create_task(
                dataclasses.replace(request, task_id=task_id, created_ts=created),
                dataclasses.replace(
                    result,
                    task_id=task_id,
                    created_ts=created,
                    modified_ts=created,
                    expiration_ts=created + MAX_EXPIRATION_SECS,
                ),
            )
        secs = time.perf_counter() - start
        return {"inserted": missing, "insert_per_s": rate(missing, secs)}
    finally:
        await store.close()


def _pending_in_store(path: Path) -> int:
    """Rows of the SQLite `pending` table, read beside the running server.

    Read directly because GET /api/v1/tasks:count stops counting at 100,000.
    """
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        count: int = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        return count


async def measure_depth(root: Path, depth: int, polls: int, queues: int) -> Json:
    """Tops up to `depth` pending tasks, then times `polls` polls of one bot."""
    filled: Json = {}

    async def prepare(state_dir: Path) -> None:
        if depth:
            filled.update(await fill(state_dir, root / "configs", depth, queues))

    async with drover(SETTINGS, root=root, prepare=prepare) as (server, http):
        version = await bot_version(http, server.url)
        fleet = Fleet(http, server.url, version, long_poll_secs=0)
        group = BotGroup(fleet, 1, prefix="depth-bot")
        bot = group.bots[0]
        await bot.handshake()
        # One task the bot can run: its queue exists and the code paths are warm.
        await create_task(
            http, server.url, task_body("runnable", (("os", "Linux"), ("pool", "default")))
        )
        for _ in range(10):
            reply = await bot.poll()
            if reply.get("cmd") == "run":
                await bot.run_task(reply["manifest"])
        latencies: list[float] = []
        for _ in range(polls):
            start = time.perf_counter()
            reply = await bot.poll()
            latencies.append(time.perf_counter() - start)
            if reply.get("cmd") != "sleep":
                fleet.errors[f"poll:{reply.get('cmd')}"] += 1
        pending = _pending_in_store(server.state_dir / "drover.sqlite3")
    return {
        "depth": depth,
        "pending_in_store": pending,
        **filled,
        "poll": latency_summary(latencies),
        "polls_per_s": rate(len(latencies), sum(latencies)),
        "errors": dict(fleet.errors),
    }


async def main(args: argparse.Namespace) -> None:
    """Measures every depth in increasing order and prints the report."""
    load0 = load_average()
    depths = sorted(args.depths or ([0, 10_000, 100_000, 1_000_000] if args.full else [0, 10_000]))
    polls = args.polls or (2000 if args.full else 300)
    results: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="drover-b4-") as tmp:
        for depth in depths:
            results.append(await measure_depth(Path(tmp), depth, polls, args.queues))
    base = results[0]["poll"] if results and results[0]["depth"] == 0 else None
    for entry in results:
        if base is not None and entry["poll"].get("count"):
            entry["p50_ratio_to_0"] = round(entry["poll"]["p50_ms"] / base["p50_ms"], 3)
            entry["p99_ratio_to_0"] = round(entry["poll"]["p99_ms"] / base["p99_ms"], 3)
    settings = {
        "full": args.full,
        "depths": depths,
        "polls_per_depth": polls,
        "queues": args.queues,
        "long_poll_secs": 0,
        "max_bot_sleep_time": 1,
        "fill_method": "Store API (SqliteStore.create_task) before the server starts",
        "target_ratio": TARGET_RATIO,
    }
    emit("b4_poll_depth", settings, {"depths": results}, load0)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--depths", type=int, nargs="*", help="pending unrunnable tasks")
    parser.add_argument("--polls", type=int, default=0, help="timed polls per depth")
    parser.add_argument("--queues", type=int, default=10, help="queues the tasks spread over")
    return parser.parse_args()


if __name__ == "__main__":
    run(main, parse_args())
