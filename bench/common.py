"""What the Drover benchmarks share: a real server process, simulated bots, figures.

Each bench script starts `drover serve` on a free loopback port over a fresh
temporary state directory and a temporary copy of `configs/` (with the
settings the benchmark needs), drives it over HTTP from asyncio clients that
speak the bot protocol (PROTOCOL.md 1.4-1.8), and prints one JSON document.
Everything is bounded: every loop has a count or a deadline, and the server
and the bots are stopped on the way out, also on errors.

Timing uses one clock, `time.perf_counter()` of the bench process; server CPU
and memory come from /proc/<pid>/stat and /proc/<pid>/status.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
DROVER = ROOT / ".venv" / "bin" / "drover"
BOT_API = "/swarming/api/v1/bot"
# How long a server gets to answer server_ping after it is started.
STARTUP_SECS = 60.0
# How long a stopped server gets to exit after SIGTERM before it is killed.
SHUTDOWN_SECS = 15.0
# A simulated bot gives up a call after this many tries (same request_uuid each time).
CALL_TRIES = 5

Json = dict[str, Any]


# Figures.


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> Json:
    """Count, mean and p50/p95/p99/max of latencies given in seconds, shown in ms."""
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "mean_ms": round(1000 * sum(seconds) / len(seconds), 3),
        "p50_ms": round(1000 * percentile(seconds, 50), 3),
        "p95_ms": round(1000 * percentile(seconds, 95), 3),
        "p99_ms": round(1000 * percentile(seconds, 99), 3),
        "max_ms": round(1000 * max(seconds), 3),
    }


def rate(count: float, seconds: float) -> float:
    """count / seconds rounded for a report; 0 for an empty interval."""
    return round(count / seconds, 1) if seconds > 0 else 0.0


def versions() -> Json:
    """Versions and machine facts every report starts with."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "drover": importlib.metadata.version("drover"),
        "drover_commit": commit,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def load_average() -> float:
    """The one-minute load average."""
    return round(os.getloadavg()[0], 2)


def emit(name: str, settings: Mapping[str, Any], results: Mapping[str, Any], load0: float) -> None:
    """Prints the one JSON document of a benchmark run."""
    load1 = load_average()
    cpus = os.cpu_count() or 1
    doc = {
        "benchmark": name,
        "versions": versions(),
        "settings": dict(settings),
        "machine": {
            "load_1m_before": load0,
            "load_1m_after": load1,
            # Other work was running when the benchmark started: treat figures as preliminary.
            "preliminary": load0 > 0.25 * cpus,
        },
        "results": dict(results),
    }
    print(json.dumps(doc, indent=2))


def base_args(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every bench script has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--full", action="store_true", help="the issue's sizes (default: a short smoke run)"
    )
    parser.add_argument(
        "--max-secs", type=float, default=600.0, help="hard cap on the whole run, in seconds"
    )
    return parser


def raise_fd_limit() -> int:
    """Raises this process's open-file limit to its hard limit; returns it.

    Servers started afterwards inherit it: thousands of held polls are
    thousands of sockets on both sides.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def own_cpu_seconds() -> float:
    """CPU seconds (user + system) used by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# The server process.


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of stat(5); the slice starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of a process, in bytes (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def settings_text(settings: Mapping[str, int | bool]) -> str:
    """settings.cfg text (text-format protobuf) for scalar settings."""
    lines = []
    for key, value in settings.items():
        shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
        lines.append(f"{key}: {shown}\n")
    return "".join(lines)


def prepare_dirs(root: Path, settings: Mapping[str, int | bool]) -> tuple[Path, Path]:
    """Makes `root/state` and `root/configs` (a copy of configs/ with `settings`)."""
    state = root / "state"
    configs = root / "configs"
    state.mkdir(parents=True, exist_ok=True)
    if not configs.exists():
        shutil.copytree(ROOT / "configs", configs, ignore=shutil.ignore_patterns("examples"))
    (configs / "settings.cfg").write_text(settings_text(settings))
    return state, configs


def _has_grpc_port_option() -> bool:
    """Whether `drover serve` takes --grpc-port (the client API over gRPC is not measured)."""
    out = subprocess.run(
        [str(DROVER), "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--grpc-port" in out


@dataclasses.dataclass
class Server:
    """A running `drover serve` process."""

    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    log_path: Path
    profile_path: Path | None

    @property
    def url(self) -> str:
        """The base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process ID."""
        return self.proc.pid

    @property
    def state_dir(self) -> Path:
        """The server's state directory."""
        return self.root / "state"

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far."""
        return proc_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        """The server's resident set size now."""
        return proc_rss_bytes(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error reports."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_server(
    root: Path, settings: Mapping[str, int | bool], *, profile: bool = False
) -> Server:
    """Starts `drover serve` over `root/state` and `root/configs` (see prepare_dirs).

    With `profile`, the server runs under cProfile and writes its stats to
    `root/server.prof` when it stops.
    """
    state, configs = prepare_dirs(root, settings)
    port = free_port()
    command = [str(DROVER), "serve", "--port", str(port)]
    command += ["--state-dir", str(state), "--config-dir", str(configs), "--log-level", "WARNING"]
    if _has_grpc_port_option():
        command += ["--grpc-port", "-1"]
    profile_path = root / "server.prof" if profile else None
    if profile_path is not None:
        python = DROVER.parent / "python"
        command = [str(python), "-m", "cProfile", "-o", str(profile_path), *command]
    log_path = root / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return Server(proc=proc, port=port, root=root, log_path=log_path, profile_path=profile_path)


async def wait_ready(server: Server, http: aiohttp.ClientSession) -> None:
    """Waits until the server answers server_ping; raises if it dies or takes too long."""
    deadline = time.perf_counter() + STARTUP_SECS
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited at startup:\n{server.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(f"{server.url}{BOT_API}/server_ping") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the server did not answer within {STARTUP_SECS} s:\n{server.log_tail()}")


async def stop_server(server: Server) -> None:
    """SIGTERM, then SIGKILL if the server has not exited in SHUTDOWN_SECS."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(server.proc.wait, SHUTDOWN_SECS)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def http_session(limit: int = 0) -> aiohttp.ClientSession:
    """A client session whose connection pool is unbounded (or `limit`): one socket per bot."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)
    )


@contextlib.asynccontextmanager
async def drover(
    settings: Mapping[str, int | bool],
    *,
    root: Path | None = None,
    profile: bool = False,
    prepare: Callable[[Path], Any] | None = None,
) -> AsyncIterator[tuple[Server, aiohttp.ClientSession]]:
    """A started server over fresh temporary state, and a client session for it.

    `prepare(state_dir)`, if given, runs before the server starts (for
    example to fill its SQLite file). The temporary directory is removed
    on the way out unless `root` was given.
    """
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="drover-bench-")))
        state, _ = prepare_dirs(root, settings)
        if prepare is not None:
            result = prepare(state)
            if asyncio.iscoroutine(result):
                await result
        server = start_server(root, settings, profile=profile)
        try:
            async with http_session() as http:
                await wait_ready(server, http)
                yield server, http
        finally:
            await stop_server(server)


def profile_summary(path: Path, per: int, top: int = 25) -> Json:
    """The top of a cProfile dump, by own and by cumulative time, in µs per `per` items."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats keeps it untyped
    # Time blocked in epoll is the event loop idling, not work: shown apart.
    idle = sum(v[2] for k, v in raw.items() if "select.epoll" in k[2])
    raw = {k: v for k, v in raw.items() if "select.epoll" not in k[2]}
    total = sum(entry[2] for entry in raw.values())

    def name(func: tuple[str, int, str]) -> str:
        filename, line, function = func
        short = filename.replace(str(ROOT) + "/", "")
        short = short.split("site-packages/")[-1].split("/lib/python3")[-1]
        return f"{short}:{line}({function})"

    def rows(index: int) -> list[str]:
        ordered = sorted(raw.items(), key=lambda item: item[1][index], reverse=True)[:top]
        out = []
        for func, (_cc, ncalls, tottime, cumtime, _callers) in ordered:
            out.append(
                f"{1e6 * tottime / per:9.1f} us own {1e6 * cumtime / per:9.1f} us cum"
                f" {ncalls / per:8.2f} calls  {name(func)}"
            )
        return out

    return {
        "note": "cProfile counts every resumption of a coroutine as a call",
        "busy_seconds": round(total, 3),
        "idle_seconds": round(idle, 3),
        "per": per,
        "top_by_own_time": rows(2),
        "top_by_cumulative_time": rows(3),
    }


# The client API.


def task_body(
    name: str,
    dimensions: Sequence[tuple[str, str]] = (("pool", "default"),),
    *,
    expiration_secs: int = 3600,
    tags: Sequence[str] = (),
) -> Json:
    """A no-op NewTaskRequest that waits for capacity (never NO_RESOURCE at creation)."""
    return {
        "name": name,
        "priority": 100,
        "tags": list(tags),
        "task_slices": [
            {
                "expiration_secs": expiration_secs,
                "wait_for_capacity": True,
                "properties": {
                    "command": ["true"],
                    "dimensions": [{"key": k, "value": v} for k, v in dimensions],
                    "execution_timeout_secs": 60,
                },
            }
        ],
    }


async def create_task(http: aiohttp.ClientSession, url: str, body: Json) -> str:
    """Creates a task; returns its ID. Raises on any answer but 200."""
    async with http.post(f"{url}/api/v1/tasks", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"create task: {resp.status} {await resp.text()}")
        data = await resp.json()
    task_id: str = data["task_id"]
    return task_id


async def create_tasks(
    http: aiohttp.ClientSession,
    url: str,
    count: int,
    body: Callable[[int], Json],
    *,
    concurrency: int = 32,
) -> list[str]:
    """Creates `count` tasks with at most `concurrency` requests in flight; returns IDs."""
    ids: list[str] = [""] * count
    cursor = iter(range(count))

    async def worker() -> None:
        for i in cursor:
            ids[i] = await create_task(http, url, body(i))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return ids


@dataclasses.dataclass
class Submitted:
    """What an open-loop submission did: when each task was sent, and how late."""

    sent_at: dict[str, float]
    started: float
    ended: float
    lag: list[float]

    @property
    def lag_max_ms(self) -> float:
        """How far behind its schedule the submitter fell at worst, in ms."""
        return round(1000 * max(self.lag), 3) if self.lag else 0.0


async def submit_at_rate(
    http: aiohttp.ClientSession,
    url: str,
    target: float,
    secs: float,
    body: Callable[[int], Json],
    *,
    max_in_flight: int = 256,
) -> Submitted:
    """Creates tasks on a fixed schedule (open loop): task i is sent at start + i / target.

    Each task's send time is taken just before its request, on this
    process's perf_counter. Sends do not wait for earlier answers, up to
    `max_in_flight` at once; past that the submitter falls behind, which
    `lag` records.
    """
    count = int(target * secs)
    sent_at: dict[str, float] = {}
    in_flight = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()
    lag: list[float] = []

    async def send(i: int) -> None:
        async with in_flight:
            t = time.perf_counter()
            sent_at[await create_task(http, url, body(i))] = t

    start = time.perf_counter()
    for i in range(count):
        due = start + i / target
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            lag.append(now - due)
        task = asyncio.create_task(send(i))
        running.add(task)
        task.add_done_callback(running.discard)
    ended = time.perf_counter()
    await asyncio.gather(*running)
    return Submitted(sent_at=sent_at, started=start, ended=ended, lag=lag)


async def count_tasks(http: aiohttp.ClientSession, url: str, state: str) -> int:
    """How many tasks are in `state` (GET /api/v1/tasks:count)."""
    async with http.get(f"{url}/api/v1/tasks:count", params={"state": state}) as resp:
        data = await resp.json()
    return int(data.get("count", 0))


async def bot_version(http: aiohttp.ClientSession, url: str) -> str:
    """The bot version the server expects (GET /api/v1/server → bot_version)."""
    async with http.get(f"{url}/api/v1/server") as resp:
        data = await resp.json()
    version: str = data["bot_version"]
    return version


# Simulated bots.


class BotCallError(Exception):
    """A bot call failed after its retries."""


@dataclasses.dataclass
class Fleet:
    """What a set of simulated bots share: the client, counters and callbacks.

    `on_run(run_id, t)` is called when a bot receives a `run` answer and
    `on_done(run_id, t)` when its completing task_update is accepted; `t` is
    `time.perf_counter()`.
    """

    http: aiohttp.ClientSession
    url: str
    version: str
    long_poll_secs: float
    claim: bool = False
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    on_run: Callable[[str, float], None] | None = None
    on_done: Callable[[str, float], None] | None = None
    completed: int = 0
    handshakes_done: int = 0
    polls_answered: int = 0
    dimensions: Mapping[str, list[str]] = dataclasses.field(
        default_factory=lambda: {"os": ["Linux"], "pool": ["default"]}
    )

    @property
    def total_requests(self) -> int:
        """Every bot call made so far, retries included."""
        return sum(self.requests.values())


class SimBot:
    """One simulated bot: handshake, then poll → (claim) → task_update, until stopped."""

    def __init__(self, fleet: Fleet, bot_id: str) -> None:
        self.fleet = fleet
        self.bot_id = bot_id
        self.session: str | None = None
        self.dimensions = {"id": [bot_id], **fleet.dimensions}
        self.sleep_streak = 0

    async def call(self, name: str, body: Json, limit_secs: float = 30.0) -> Json:
        """POSTs a bot call, retrying the same body on transport errors and 5xx."""
        fleet = self.fleet
        kind = name.split("/", 1)[0]
        for attempt in range(CALL_TRIES):
            fleet.requests[kind] += 1
            try:
                async with fleet.http.post(
                    f"{fleet.url}{BOT_API}/{name}",
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=limit_secs),
                ) as resp:
                    if resp.status == 200:
                        data: Json = await resp.json()
                        if isinstance(data.get("session"), str) and data["session"]:
                            self.session = data["session"]
                        return data
                    fleet.errors[f"{kind}:{resp.status}"] += 1
                    if resp.status < 500:
                        raise BotCallError(f"{name}: {resp.status} {await resp.text()}")
            except (aiohttp.ClientError, TimeoutError) as e:
                fleet.errors[f"{kind}:{type(e).__name__}"] += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        raise BotCallError(f"{name}: no answer after {CALL_TRIES} tries")

    def _report(self) -> Json:
        return {
            "dimensions": self.dimensions,
            "state": {"running_time": 1, "sleep_streak": self.sleep_streak},
            "version": self.fleet.version,
        }

    async def handshake(self) -> None:
        """Opens a session."""
        body = {**self._report(), "session_id": f"{uuid.uuid4().hex}/1"}
        await self.call("handshake", body)
        self.fleet.handshakes_done += 1

    async def poll(self) -> Json:
        """One poll; retries reuse its request_uuid, so a lost answer is replayed."""
        body = {**self._report(), "session": self.session, "request_uuid": uuid.uuid4().hex}
        reply = await self.call("poll", body, limit_secs=self.fleet.long_poll_secs + 30)
        self.fleet.polls_answered += 1
        return reply

    async def run_task(self, manifest: Json) -> None:
        """Claims (optionally) and completes a no-op run at once."""
        fleet = self.fleet
        run_id: str = manifest["task_id"]
        if fleet.claim:
            claim = {"session": self.session, "claim_id": uuid.uuid4().hex, "task_id": run_id}
            answer = await self.call("claim", claim)
            if answer.get("cmd") != "run":
                fleet.errors["claim:skip"] += 1
                return
        update = {
            "id": self.bot_id,
            "task_id": run_id,
            "session": self.session,
            "cost_usd": 0.0,
            "exit_code": 0,
            "duration": 0.0,
        }
        answer = await self.call(f"task_update/{run_id}", update)
        if not answer.get("ok") or answer.get("must_stop"):
            fleet.errors["task_update:refused"] += 1
            return
        fleet.completed += 1
        if fleet.on_done is not None:
            fleet.on_done(run_id, time.perf_counter())

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fleet.stop.wait(), seconds)

    async def run(
        self, *, handshake: bool = True, max_polls: int = 10**9, delay: float = 0.0
    ) -> None:
        """Polls until the fleet is stopped (or `max_polls`); handshakes first if asked.

        `delay` seconds pass before anything else (to spread a fleet's polls in time).
        """
        fleet = self.fleet
        if delay > 0:
            await self._pause(delay)
        if handshake or self.session is None:
            await self.handshake()
        for _ in range(max_polls):
            if fleet.stop.is_set():
                return
            reply = await self.poll()
            cmd = reply.get("cmd")
            if cmd == "run":
                if fleet.on_run is not None:
                    fleet.on_run(reply["manifest"]["task_id"], time.perf_counter())
                self.sleep_streak = 0
                await self.run_task(reply["manifest"])
            elif cmd == "sleep":
                self.sleep_streak += 1
                await self._pause(float(reply.get("duration", 1.0)))
            elif cmd == "bot_restart":
                fleet.errors["poll:bot_restart"] += 1
                await self.handshake()
            elif cmd == "update":
                fleet.errors["poll:update"] += 1
                fleet.version = str(reply.get("version", fleet.version))
            else:
                fleet.errors[f"poll:{cmd}"] += 1
                return


class BotGroup:
    """Simulated bots running as asyncio tasks; stopping cancels held polls."""

    def __init__(self, fleet: Fleet, count: int, prefix: str = "bench-bot") -> None:
        self.fleet = fleet
        self.bots = [SimBot(fleet, f"{prefix}-{i}") for i in range(count)]
        self.tasks: list[asyncio.Task[None]] = []

    async def handshake_all(self, concurrency: int = 100) -> None:
        """Handshakes every bot, at most `concurrency` at a time."""
        cursor = iter(self.bots)

        async def worker() -> None:
            for bot in cursor:
                await bot.handshake()

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(self.bots)))))

    def start(self, *, handshake: bool = False, spread_secs: float = 0.0) -> None:
        """Starts every bot's poll loop, the starts spread evenly over `spread_secs`."""
        step = spread_secs / max(len(self.bots), 1)
        self.tasks = [
            asyncio.create_task(bot.run(handshake=handshake, delay=i * step))
            for i, bot in enumerate(self.bots)
        ]

    def failures(self) -> list[str]:
        """The errors of bots that stopped on their own."""
        out = []
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                out.append(repr(task.exception()))
        return out

    async def stop(self) -> None:
        """Stops every bot: sets the stop flag, then cancels what is still waiting."""
        self.fleet.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.005) -> bool:
    """Polls `predicate` until it holds or `within` seconds pass; returns whether it held."""
    deadline = time.perf_counter() + within
    while not predicate():
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


def run(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> None:
    """Runs a bench coroutine under its hard time cap; exits non-zero on failure."""
    raise_fd_limit()

    async def capped() -> None:
        await asyncio.wait_for(main(args), args.max_secs)

    try:
        asyncio.run(capped())
    except TimeoutError:
        print(f"benchmark exceeded --max-secs {args.max_secs}", file=sys.stderr)
        sys.exit(2)
