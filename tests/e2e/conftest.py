"""End-to-end fixtures: a real `drover serve` process and real bots that downloaded
their code from it. Everything listens on 127.0.0.1 and is killed at teardown."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DroverServer:
    """A running server process and a small synchronous client for its API."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, config_dir: pathlib.Path) -> None:
        self.proc = proc
        self.url = url
        self.config_dir = config_dir

    @property
    def state_dir(self) -> pathlib.Path:
        """Where the server keeps its state (the fixture puts it next to the configs)."""
        return self.config_dir.parent / "state"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Calls the client API and returns the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            if resp.headers.get_content_type() == "application/json":
                return json.loads(raw)
            return raw

    def create_task(self, command: list[str], **extra: Any) -> str:
        """Creates a task in pool `default`; returns its ID."""
        props = extra.pop("properties", {})
        body: dict[str, Any] = {
            "name": "e2e",
            "task_slices": [
                {
                    "expiration_secs": 600,
                    "properties": {
                        "command": command,
                        "dimensions": [{"key": "pool", "value": "default"}],
                        "execution_timeout_secs": 120,
                        "grace_period_secs": 2,
                        **props,
                    },
                }
            ],
            **extra,
        }
        task_id: str = self.call("POST", "/api/v1/tasks", body)["task_id"]
        return task_id

    def result(self, task_id: str) -> dict[str, Any]:
        """The task's current result."""
        result: dict[str, Any] = self.call("GET", f"/api/v1/tasks/{task_id}")
        return result

    def wait(
        self, task_id: str, states: tuple[str, ...] | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        """Waits until the task is in one of `states` (default: any final state)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.result(task_id)
            done = (
                result["state"] in states
                if states
                else result["state"]
                not in (
                    "PENDING",
                    "RUNNING",
                )
            )
            if done:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} still {result['state']} after {timeout}s")
            time.sleep(0.2)

    def reconfigure(self, **files: str) -> None:
        """Writes config files (`pools_cfg="..."` is pools.cfg) and waits until they are live."""
        before = self.call("GET", "/api/v1/server")["config_revision"]
        for name, text in files.items():
            (self.config_dir / name.replace("_", ".")).write_text(text)
        wait_for(
            lambda: self.call("GET", "/api/v1/server")["config_revision"] != before,
            30,
            "the config to reload",
        )

    def log(self, task_id: str) -> bytes:
        """The task's raw output."""
        data: bytes = self.call("GET", f"/api/v1/tasks/{task_id}/log")
        return data

    def bot(self, bot_id: str) -> dict[str, Any]:
        """The API's view of a bot."""
        info: dict[str, Any] = self.call("GET", f"/api/v1/bots/{bot_id}")
        return info

    def events(self, bot_id: str) -> list[dict[str, Any]]:
        """The bot's events, newest first; none for a bot not seen yet."""
        try:
            page = self.call("GET", f"/api/v1/bots/{bot_id}/events")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise
        items: list[dict[str, Any]] = page["items"]
        return items


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    """Polls `predicate` until true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid` (children first), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(pid: int) -> None:
    """SIGKILLs a process and all its descendants, as if its machine died."""
    for victim in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# As in the quickstart, callers without a token may schedule (not administer).
E2E_SETTINGS = """
long_poll_secs: 2
bot_death_timeout_secs: 30
max_bot_sleep_time: 1
anonymous_role: "scheduler"
"""


def copy_configs(target: pathlib.Path, settings: str = E2E_SETTINGS) -> pathlib.Path:
    """A copy of the quickstart configs in `target`, with `settings` as settings.cfg."""
    shutil.copytree(ROOT / "configs", target, ignore=shutil.ignore_patterns("examples"))
    (target / "settings.cfg").write_text(settings)
    return target


def launch_server(
    workdir: pathlib.Path,
    config_dir: pathlib.Path,
    *flags: str,
    env: dict[str, str] | None = None,
) -> DroverServer:
    """Starts `drover serve` on a free loopback port and waits until it answers.

    Its state goes to workdir/state and its log to workdir/server.log;
    `flags` are more `serve` flags. Stop it with `stop_server`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--port",
            str(port),
            "--grpc-port",
            "0",
            "--state-dir",
            str(workdir / "state"),
            "--config-dir",
            str(config_dir),
            *flags,
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    log.close()
    server = DroverServer(proc, url, config_dir)

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/swarming/api/v1/bot/server_ping", timeout=1):
                return True
        except OSError:
            assert proc.poll() is None, log_path.read_text()
            return False

    try:
        wait_for(up, 30, "the server to start")
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: DroverServer) -> None:
    """Stops a server started by `launch_server` (SIGTERM, then SIGKILL)."""
    _stop(server.proc)


@pytest.fixture
def drover(tmp_path: pathlib.Path) -> Iterator[DroverServer]:
    """A `drover serve` process on a free loopback port with short timings."""
    server = launch_server(tmp_path, copy_configs(tmp_path / "configs"))
    yield server
    stop_server(server)


class BotProcess:
    """A bot started from the zip its server served."""

    def __init__(self, bot_id: str, workdir: pathlib.Path, proc: subprocess.Popen[bytes]) -> None:
        self.bot_id = bot_id
        self.workdir = workdir
        self.proc = proc

    def log(self) -> str:
        """What the bot printed."""
        return (self.workdir / "bot.out").read_text(errors="replace")


def launch_bot(
    server: DroverServer, bot_id: str, workdir: pathlib.Path, env: dict[str, str] | None = None
) -> BotProcess:
    """Starts a bot in `workdir` from the code `server` serves, like a new machine would.

    Stop it with `stop_bot`.
    """
    workdir.mkdir(parents=True)
    zip_path = workdir / "swarming_bot.zip"
    with urllib.request.urlopen(f"{server.url}/bot_code?bot_id={bot_id}", timeout=30) as r:
        zip_path.write_bytes(r.read())
    out = open(workdir / "bot.out", "wb")  # noqa: SIM115 - handed to the process
    proc = subprocess.Popen(
        [sys.executable, str(zip_path), "start_bot"],
        cwd=workdir,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SWARMING_BOT_ID": bot_id, **(env or {})},
        start_new_session=True,
    )
    out.close()
    return BotProcess(bot_id, workdir, proc)


def stop_bot(bot: BotProcess) -> None:
    """Stops a bot and kills whatever it left running."""
    tree = descendants(bot.proc.pid)
    _stop(bot.proc)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_bot(drover: DroverServer, tmp_path: pathlib.Path) -> Iterator[Callable[..., BotProcess]]:
    """Starts bots that download their code from the server, like a new machine would."""
    bots: list[BotProcess] = []

    def start(bot_id: str = "bot1", env: dict[str, str] | None = None) -> BotProcess:
        bot = launch_bot(drover, bot_id, tmp_path / "bots" / bot_id, env)
        bots.append(bot)
        # Tasks created before any matching bot was seen end NO_RESOURCE.
        wait_for(lambda: bool(drover.events(bot_id)), 60, f"bot {bot_id} to connect")
        return bot

    yield start
    for bot in bots:
        stop_bot(bot)
