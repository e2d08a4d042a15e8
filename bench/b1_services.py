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
import cProfile
import gc
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from figures import Json, per
from open_loop import SETTINGS
from profiles import profile_summary
from reports import base_args, run
from server_process import prepare_dirs
from task_api import task_body

from server.app import ServerOptions, create_app
from server.appkeys import BOT_SERVICE, RUN_SERVICE
from server.botapi import messages
from server.cli.serve import GC_THRESHOLDS
from server.store import sqlite_schema

CREDENTIALS = messages.BotCredentials(remote_ip="127.0.0.1", headers={})


class TimedConnection(sqlite3.Connection):
    """A connection that adds up the time its statements take (the store's SQLite work)."""

    seconds = 0.0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        start = time.process_time()
        try:
            return super().execute(sql, parameters)
        finally:
            TimedConnection.seconds += time.process_time() - start

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        start = time.process_time()
        try:
            return super().executemany(sql, parameters)
        finally:
            TimedConnection.seconds += time.process_time() - start


def _timed_connect(connect: Callable[..., sqlite3.Connection]) -> Callable[..., sqlite3.Connection]:
    def timed(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, factory=TimedConnection, **kwargs)

    return timed


class Meter:
    """CPU seconds of one kind of call, and the store's SQLite share of them."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.sql = 0.0

    def figures(self, tasks: int) -> Json:
        return {
            "cpu_us_per_task": per(self.cpu, tasks, 1e6, digits=1),
            "sqlite_us_per_task": per(self.sql, tasks, 1e6, digits=1),
        }


async def measure(tasks: int, bots: int, profile_to: Path | None) -> Json:
    """Creates `tasks` tasks, then drains them through `bots` in-process bots."""
    gc.set_threshold(*GC_THRESHOLDS)
    # The store's connection (and only it: the checkpointer opens its own
    # with sqlite3.connect) counts its statements' time.
    setattr(sqlite_schema, "sqlite3", _Sqlite3WithTimedConnect())  # noqa: B010
    with tempfile.TemporaryDirectory(prefix="drover-b1s-") as tmp:
        state, configs = prepare_dirs(Path(tmp), SETTINGS)
        app = await create_app(
            ServerOptions(state_dir=state, config_dir=configs, server_url="http://127.0.0.1:1")
        )
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            for i in range(tasks):
                async with client.post("/api/v1/tasks", json=task_body(f"noop-{i}")) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"create task: {resp.status} {await resp.text()}")
            async with client.get("/api/v1/server") as resp:
                version = (await resp.json())["bot_version"]
            return await _drain(app, tasks, bots, version, profile_to)
        finally:
            await client.close()


async def _drain(app: Any, tasks: int, bots: int, version: str, profile_to: Path | None) -> Json:
    poll_svc, run_svc = app[BOT_SERVICE], app[RUN_SERVICE]
    fleet: list[dict[str, Any]] = []
    for k in range(bots):
        report = {
            "dimensions": {"id": [f"bot-{k}"], "os": ["Linux"], "pool": ["default"]},
            "state": {"running_time": 1, "sleep_streak": 0},
            "version": version,
        }
        body = {**report, "session_id": f"{uuid.uuid4().hex}/1"}
        answer = await poll_svc.handshake(messages.parse_handshake(body), CREDENTIALS)
        fleet.append({"report": report, "session": answer["session"], "id": f"bot-{k}"})
    polls, updates = Meter(), Meter()
    profiler = cProfile.Profile() if profile_to else None
    done = calls = 0
    if profiler:
        profiler.enable()
    while done < tasks and calls < 4 * tasks:
        for bot in fleet:
            calls += 1
            body = {**bot["report"], "session": bot["session"], "request_uuid": uuid.uuid4().hex}
            cpu, sql = time.process_time(), TimedConnection.seconds
            reply = await poll_svc.poll(messages.parse_poll(body), CREDENTIALS)
            polls.cpu += time.process_time() - cpu
            polls.sql += TimedConnection.seconds - sql
            bot["session"] = reply.get("session") or bot["session"]
            if reply["cmd"] != "run":
                continue
            run_id = reply["manifest"]["task_id"]
            update = {"id": bot["id"], "task_id": run_id, "session": bot["session"]}
            update |= {"cost_usd": 0.0, "exit_code": 0, "duration": 0.0}
            cpu, sql = time.process_time(), TimedConnection.seconds
            answer = await run_svc.task_update(messages.parse_task_update(update), CREDENTIALS)
            updates.cpu += time.process_time() - cpu
            updates.sql += TimedConnection.seconds - sql
            if not answer.get("ok"):
                raise RuntimeError(f"task_update refused: {answer}")
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
    if profile_to:
        figures["profile"] = profile_summary(profile_to, done, {})
    return figures


class _Sqlite3WithTimedConnect:
    """The sqlite3 module as sqlite_schema sees it, its connect making TimedConnections."""

    def __getattr__(self, name: str) -> Any:
        value = getattr(sqlite3, name)
        return _timed_connect(value) if name == "connect" else value


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
    args = parser.parse_args()
    args.tasks = args.tasks or (20_000 if args.full else 2_000)
    args.max_secs = args.max_secs or (1800.0 if args.full else 300.0)
    return args


if __name__ == "__main__":
    run("b1_services", main, parse_args(), SETTINGS)
