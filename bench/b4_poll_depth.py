"""B4: a bot's poll latency while more and more tasks that it cannot run are pending.

Each depth has a state directory of its own, filled before its server
starts with that many pending tasks through the Store API, in large
transactions: one template task per queue is made from the same JSON body a
client would POST (`task_api.task_body`, parsed by the API's own converter)
and created by the server's TaskService (validation, queue registration);
then copies of it with fresh task IDs and creation times are written with
`SqliteStore.create_task`, FILL_BATCH of them per transaction (`BatchStore`
below joins each call's transaction to the one the filler holds open). That
stores exactly what the API would, a million tasks in minutes rather than a
million HTTP calls and commits in an hour. The tasks need `os: Windows-<q>`
(spread over `--queues` queues) and wait for capacity; the bot is
`os: Linux`, so it can run none of them.

Then every depth's server runs at once (`long_poll_secs: 0`: polls answer
at once). In each, a bot handshakes and runs one task it can run (so its
own queue exists and the code paths are warm). Then the depths take turns:
each turn, one depth's bot makes WARMUP_POLLS untimed polls and then
BLOCK_POLLS timed ones back to back, until every depth has `--polls`. The
machine's speed drifts by tens of percent within minutes; turns a fraction
of a second long put the same drift on every depth, where measuring one
depth after another put it into their ratios, and polls back to back find
the server as warm as one depth at a time did. The report gives p50/p99 per
depth and their ratio to depth 0, and how long the client API takes to
count the pending tasks (`tasks:count?state=PENDING`) and to summarize all
(`tasks:summary`).

    .venv/bin/python bench/b4_poll_depth.py [--full] [--depths 0 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from figures import Json, latency_summary, rate, ratio
from google.protobuf import json_format
from reports import base_args, run, sized
from server_process import Server, drover
from sim_bots import BotGroup, Fleet, SimBot
from task_api import bot_version, create_task, task_body

from protos.api import tasks_pb2
from server import ids
from server.api import convert
from server.clock import SystemClock
from server.config.live import LiveConfig
from server.model import TaskRequest, TaskResult
from server.scheduler.queues import QueueIndex
from server.scheduler.requests import MAX_EXPIRATION_SECS
from server.scheduler.tasks import TaskService
from server.store.sqlite import SqliteStore

SETTINGS = {"long_poll_secs": 0}
# Timed calls of tasks:count and tasks:summary per depth; the fastest is reported.
COUNT_CALLS = 3
# The target: p50/p99 at 1,000,000 pending within 1.5x of the empty case.
TARGET_RATIO = 1.5
# Timed polls of one depth per turn, after untimed ones that wake its server up.
BLOCK_POLLS = 100
WARMUP_POLLS = 2
# Tasks written per transaction by the filler.
FILL_BATCH = 10_000
# Copies are created one millisecond apart from here on, so their task IDs
# (PROTOCOL.md 4.2) are distinct across top-ups; three days back keeps a
# million of them (1,000 s) in the past and inside the 7-day expiration.
FILL_BASE_TS = time.time() - 3 * 86400
FILL_METHOD = (
    "SqliteStore.create_task (the Store API) before the server starts, "
    f"{FILL_BATCH} tasks per transaction; templates by TaskService.create"
)


class BatchStore(SqliteStore):
    """A SqliteStore whose writes join the transaction the filler holds open."""

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        yield self.connection


async def _templates(store: SqliteStore, config_dir: Path, queues: int) -> list[TaskRequest]:
    """One task per queue, created as the API would create it; returns their requests."""
    clock = SystemClock()
    config = LiveConfig(config_dir, clock=clock)
    service = TaskService(store, config, clock, QueueIndex(store))
    tolerance = config.current.settings.bot_ping_tolerance_secs
    made = []
    for q in range(queues):
        body = task_body(
            f"unrunnable-{q}",
            (("os", f"Windows-{q}"), ("pool", "default")),
            expiration_secs=MAX_EXPIRATION_SECS,
        )
        draft = convert.new_request(
            json_format.ParseDict(body, tasks_pb2.NewTaskRequest()), default_tolerance=tolerance
        )
        request, _ = await service.create(dataclasses.replace(draft, authenticated_as="bench"))
        made.append(request)
    return made


async def fill(state_dir: Path, config_dir: Path, total: int, queues: int) -> Json:
    """Tops the state's pending unrunnable tasks up to `total`; returns how it went."""
    store = await BatchStore.open(state_dir / "drover.sqlite3")
    db = store.connection
    # This filler's own connection only: a crash mid-fill loses nothing that matters.
    db.execute("PRAGMA synchronous = OFF")
    try:
        have = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        missing = total - have
        if missing <= 0:
            return {"inserted": 0, "insert_per_s": 0.0}
        start = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        templates = await _templates(store, config_dir, min(queues, missing))
        db.execute("COMMIT")
        results = [await store.get_result(t.task_id) for t in templates]
        pairs = [(t, r) for t, r in zip(templates, results, strict=True) if r is not None]
        for batch in range(0, missing - len(pairs), FILL_BATCH):
            db.execute("BEGIN IMMEDIATE")
            for i in range(batch, min(batch + FILL_BATCH, missing - len(pairs))):
                request, result = pairs[i % len(pairs)]
                await store.create_task(*_copy(request, result, FILL_BASE_TS + (have + i) / 1000))
            db.execute("COMMIT")
        secs = time.perf_counter() - start
        return {
            "inserted": missing,
            "insert_per_s": rate(missing, secs),
            "fill_secs": round(secs, 1),
        }
    finally:
        await store.close()


def _copy(
    request: TaskRequest, result: TaskResult, created: float
) -> tuple[TaskRequest, TaskResult]:
    task_id = ids.new_task_id(created)
    return (
        dataclasses.replace(request, task_id=task_id, created_ts=created),
        dataclasses.replace(
            result,
            task_id=task_id,
            created_ts=created,
            modified_ts=created,
            expiration_ts=created + (result.expiration_ts - result.created_ts),
        ),
    )


def _pending_in_store(path: Path) -> int:
    """Rows of the SQLite `pending` table, read beside the running server.

    Read from the file itself, to check the count the client API answers.
    """
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        count: int = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        return count


@dataclasses.dataclass
class Depth:
    """One depth's server, its bot and what was measured of it."""

    depth: int
    server: Server
    http: aiohttp.ClientSession
    fleet: Fleet
    bot: SimBot
    filled: Json
    latencies: list[float] = dataclasses.field(default_factory=list)


async def start_depth(
    stack: contextlib.AsyncExitStack, root: Path, depth: int, queues: int
) -> Depth:
    """Fills a state directory to `depth` pending tasks, starts its server and warms its bot."""
    filled: Json = {}

    async def prepare(state_dir: Path) -> None:
        if depth:
            filled.update(await fill(state_dir, root / "configs", depth, queues))

    server, http = await stack.enter_async_context(drover(SETTINGS, root=root, prepare=prepare))
    version = await bot_version(http, server.url)
    fleet = Fleet(http, server.url, version, long_poll_secs=0)
    bot = BotGroup(fleet, 1, prefix="depth-bot").bots[0]
    await bot.handshake()
    # One task the bot can run: its queue exists and the code paths are warm.
    runnable = (("os", "Linux"), ("pool", "default"))
    await create_task(http, server.url, task_body("runnable", runnable))
    for _ in range(10):
        reply = await bot.poll()
        if reply.get("cmd") == "run":
            await bot.run_task(reply["manifest"])
    return Depth(depth, server, http, fleet, bot, filled)


async def take_turn(at: Depth, polls: int) -> None:
    """WARMUP_POLLS untimed polls of the depth's bot, then `polls` timed ones.

    Any answer but `sleep` is counted as an error.
    """
    for i in range(WARMUP_POLLS + polls):
        start = time.perf_counter()
        reply = await at.bot.poll()
        if i >= WARMUP_POLLS:
            at.latencies.append(time.perf_counter() - start)
        if reply.get("cmd") != "sleep":
            at.fleet.errors[f"poll:{reply.get('cmd')}"] += 1


async def figures_of(at: Depth) -> Json:
    """The depth's poll latencies, its counts' times, and what its store holds."""
    counted = await _time_counts(at.http, at.server.url)
    return {
        "depth": at.depth,
        "pending_in_store": _pending_in_store(at.server.state_dir / "drover.sqlite3"),
        **at.filled,
        "poll": latency_summary(at.latencies),
        "polls_per_s": rate(len(at.latencies), sum(at.latencies)),
        **counted,
        "errors": dict(at.fleet.errors),
    }


async def _time_counts(http: aiohttp.ClientSession, url: str) -> Json:
    """The client API's count of PENDING tasks and summary of all, each the fastest of COUNT_CALLS.

    Both answer from the store's indexes; the count shows they are exact.
    """
    figures: Json = {}
    for name, path in (("count", "tasks:count?state=PENDING"), ("summary", "tasks:summary")):
        best = float("inf")
        for _ in range(COUNT_CALLS):
            start = time.perf_counter()
            async with http.get(f"{url}/api/v1/{path}") as resp:
                body = await resp.json()
            best = min(best, time.perf_counter() - start)
        figures[f"{name}_ms"] = round(best * 1000, 2)
        figures[f"{name}_answer"] = body.get("count") or body.get("total") or "0"
    return figures


async def main(args: argparse.Namespace) -> Json:
    """Starts every depth's server, then times their polls in turn."""
    with tempfile.TemporaryDirectory(prefix="drover-b4-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            depths = [
                await start_depth(stack, Path(tmp) / f"depth-{depth}", depth, args.queues)
                for depth in args.depths
            ]
            for done in range(0, args.polls, BLOCK_POLLS):
                for at in depths:
                    await take_turn(at, min(BLOCK_POLLS, args.polls - done))
            results = [await figures_of(at) for at in depths]
    base = results[0]["poll"] if results and results[0]["depth"] == 0 else {}
    for entry in results:
        entry["p50_ratio_to_0"] = ratio(entry["poll"].get("p50_ms"), base.get("p50_ms"))
        entry["p99_ratio_to_0"] = ratio(entry["poll"].get("p99_ms"), base.get("p99_ms"))
    return {"fill_method": FILL_METHOD, "target_ratio": TARGET_RATIO, "depths": results}


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--depths", type=int, nargs="*", help="pending unrunnable tasks")
    parser.add_argument("--polls", type=int, default=0, help="timed polls per depth")
    parser.add_argument("--queues", type=int, default=10, help="queues the tasks spread over")
    args = parser.parse_args()
    full = [0, 10_000, 100_000, 1_000_000]
    args.depths = sorted(args.depths or (full if args.full else [0, 10_000]))
    return sized(args, polls=(300, 2000), max_secs=(600.0, 3600.0))


if __name__ == "__main__":
    run("b4_poll_depth", main, parse_args(), SETTINGS)
