"""The Drover server a benchmark measures: a real `drover serve` process on loopback.

Each benchmark starts the server on a free 127.0.0.1 port over a fresh
temporary state directory (SQLite) and a temporary copy of `configs/` whose
`settings.cfg` holds only what the benchmark sets. Its CPU and memory are
read from /proc. With `profile`, it runs under cProfile through
bench/counted_serve.py, which also counts the SQLite statements it executes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import callgrind
from figures import Json, proc_cpu_seconds, proc_rss_bytes

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
PYTHON = ROOT / ".venv" / "bin" / "python"
BOT_API = "/swarming/api/v1/bot"
# How long a server gets to answer server_ping after it is started; a server
# over a million pending tasks opens its SQLite file in well under that.
STARTUP_SECS = 120.0
# How long a stopped server gets to exit after SIGTERM before it is killed
# (a profiled one writes its stats first; one that held 10,000 polls has
# been seen to take more than 30 s, which B3 reports as server_stop_secs).
SHUTDOWN_SECS = 120.0
# Every benchmark's server settings start from these: the bench client calls
# the API without a token, and idle bots come back within a second.
BASE_SETTINGS: Mapping[str, int | str] = {"anonymous_role": "scheduler", "max_bot_sleep_time": 1}

Settings = Mapping[str, int | bool | str]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_text(settings: Settings) -> str:
    """settings.cfg text (text-format protobuf) for scalar settings."""
    lines = []
    for key, value in settings.items():
        if isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, str):
            shown = json.dumps(value)
        else:
            shown = str(value)
        lines.append(f"{key}: {shown}\n")
    return "".join(lines)


def prepare_dirs(root: Path, settings: Settings) -> tuple[Path, Path]:
    """Makes `root/state` and `root/configs` (a copy of configs/ with `settings`)."""
    state = root / "state"
    configs = root / "configs"
    state.mkdir(parents=True, exist_ok=True)
    if not configs.exists():
        shutil.copytree(ROOT / "configs", configs, ignore=shutil.ignore_patterns("examples"))
    (configs / "settings.cfg").write_text(settings_text({**BASE_SETTINGS, **settings}))
    return state, configs


@dataclasses.dataclass
class Server:
    """A running `drover serve` process."""

    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    log_path: Path
    profile_path: Path | None
    # Where a stamped server (bench/stamped_serve.py) writes its stamps on exit.
    stamps_path: Path | None = None
    # From SIGTERM to exit, once stopped (None: killed, or not stopped yet).
    stop_secs: float | None = None
    # The file callgrind writes, for a server run under it (callgrind.wrap).
    callgrind_out: Path | None = None

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

    @property
    def sql_counts_path(self) -> Path | None:
        """Where a profiled server writes the count of its SQLite statements."""
        return None if self.profile_path is None else self.profile_path.with_suffix(".sql.json")

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far."""
        return proc_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        """The server's resident set size now."""
        return proc_rss_bytes(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error reports."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def sql_counts(self) -> Json:
        """SQLite statements by first keyword, written by a profiled server when it stopped."""
        path = self.sql_counts_path
        if path is None or not path.exists():
            return {}
        counts: Json = json.loads(path.read_text())
        return counts

    async def sql_counts_now(self) -> Json:
        """SQLite statements by first keyword so far, asked of a profiled server (SIGUSR1)."""
        path = self.sql_counts_path
        if path is None:
            return {}
        snapshot = path.with_name(path.name + ".snapshot")
        snapshot.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        for _ in range(int(STARTUP_SECS / 0.01)):
            if snapshot.exists():
                break
            await asyncio.sleep(0.01)
        counts: Json = json.loads(snapshot.read_text())
        return counts


def start_server(
    root: Path,
    settings: Settings,
    *,
    profile: bool = False,
    stamps: bool = False,
    under_callgrind: bool = False,
) -> Server:
    """Starts `drover serve` over `root/state` and `root/configs` (see prepare_dirs).

    With `profile`, the server runs under cProfile and writes its stats to
    `root/server.prof` (and its SQLite statement counts beside it) when it
    stops; with `stamps`, it stamps each task's way through it
    (bench/stamped_serve.py) into `root/stamps.json`. Not both: each
    wraps `drover serve` in a script of its own.
    """
    if profile and stamps:
        raise ValueError("a server is either profiled or stamped, not both")
    state, configs = prepare_dirs(root, settings)
    port = free_port()
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "-1"]
    serve += ["--state-dir", str(state), "--config-dir", str(configs), "--log-level", "WARNING"]
    profile_path = root / "server.prof" if profile else None
    stamps_path = root / "stamps.json" if stamps else None
    if stamps_path is not None:
        command = [str(PYTHON), str(HERE / "stamped_serve.py"), str(stamps_path), *serve]
    elif profile_path is None:
        command = [str(PYTHON), "-m", "server", *serve]
    else:
        counts = profile_path.with_suffix(".sql.json")
        command = [str(PYTHON), "-m", "cProfile", "-o", str(profile_path)]
        command += [str(HERE / "counted_serve.py"), str(counts), *serve]
    return spawn(command, root, port, profile_path, stamps_path, under_callgrind)


def spawn(
    command: list[str],
    root: Path,
    port: int,
    profile_path: Path | None = None,
    stamps_path: Path | None = None,
    under_callgrind: bool = False,
) -> Server:
    """Starts a server process listening on `port`, its output logged under `root`.

    With `under_callgrind`, the command runs under valgrind's callgrind (callgrind.wrap).
    """
    callgrind_out = None
    if under_callgrind:
        command, callgrind_out = callgrind.wrap(command)
    log_path = root / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return Server(
        proc=proc,
        port=port,
        root=root,
        log_path=log_path,
        profile_path=profile_path,
        stamps_path=stamps_path,
        callgrind_out=callgrind_out,
    )


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
        start = time.perf_counter()
        try:
            await asyncio.to_thread(server.proc.wait, SHUTDOWN_SECS)
            server.stop_secs = round(time.perf_counter() - start, 3)
        except subprocess.TimeoutExpired:
            print(f"server {server.pid} ignored SIGTERM; killed", file=sys.stderr)
            server.proc.kill()
            await asyncio.to_thread(server.proc.wait)


def http_session(limit: int = 0) -> aiohttp.ClientSession:
    """A client session whose connection pool is unbounded (or `limit`): one socket per bot."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)
    )


@contextlib.asynccontextmanager
async def drover(
    settings: Settings,
    *,
    root: Path | None = None,
    profile: bool = False,
    stamps: bool = False,
    under_callgrind: bool = False,
    prepare: Callable[[Path], Awaitable[Any]] | None = None,
) -> AsyncIterator[tuple[Server, aiohttp.ClientSession]]:
    """A started server over fresh temporary state, and a client session for it.

    `prepare(state_dir)`, if given, runs before the server starts (for
    example to fill its SQLite file). The temporary directory is removed
    on the way out unless `root` was given; the server is stopped (and a
    profiled one has written its stats, a stamped one its stamps) before the
    block's caller goes on.
    """
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="drover-bench-")))
        state, _ = prepare_dirs(root, settings)
        if prepare is not None:
            await prepare(state)
        server = start_server(
            root, settings, profile=profile, stamps=stamps, under_callgrind=under_callgrind
        )
        try:
            async with http_session() as http:
                await wait_ready(server, http)
                yield server, http
        finally:
            await stop_server(server)
