"""Fixtures for the bot's tests: a scripted server and real bot processes.

Bots run as real subprocesses from archives built like the server builds
them, each in its own temporary directory; teardown kills every process
whose working directory is under the test's tmp_path, so nothing a test
started (bot, task runner, task) outlives it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping

import pytest

from tests.bot import botzip
from tests.bot.fakeserver import FakeServer

BOT_ID = "test-bot"
PY39 = pathlib.Path("/root/.pyenv/versions/3.9.18/bin/python3")


class BotProcess:
    """A bot started by a test, with its directory and log."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        directory: pathlib.Path,
        log: pathlib.Path,
        version: str,
    ) -> None:
        self.proc = proc
        self.dir = directory
        self.log_path = log
        self.version = version

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """What the bot wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 20.0, expect: int | None = None) -> int:
        """Waits for the bot to exit; its exit code (checked against `expect` if given)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"bot still running after {timeout}s:\n{self.log()}") from None
        assert expect is None or code == expect, f"exit code {code}:\n{self.log()}"
        return code

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)


def bot_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A bot's environment: ours without proxies, with a fixed bot ID."""
    env = {
        k: v
        for k, v in os.environ.items()
        if "proxy" not in k.lower() and not k.startswith(("DROVER_", "SWARMING_", "PYTEST_"))
    }
    env["SWARMING_BOT_ID"] = BOT_ID
    env.update(extra or {})
    return env


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_processes_under(root: pathlib.Path) -> None:
    """SIGKILLs every process whose working directory is under `root`."""
    prefix = str(root)
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(prefix):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Polls `predicate` until it holds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    """A scripted bot API server on loopback."""
    fake = FakeServer().start()
    yield fake
    fake.stop()


StartBot = Callable[..., BotProcess]


@pytest.fixture
def start_bot(tmp_path: pathlib.Path, server: FakeServer) -> Iterator[StartBot]:
    """Starts bots from fresh archives (`python3 swarming_bot.zip start_bot`)."""
    started: list[BotProcess] = []

    def start(
        *,
        name: str = "bot",
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        bot_config: str = botzip.BASE_HOOKS,
        build: bool = True,
    ) -> BotProcess:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        zip_path = directory / "swarming_bot.zip"
        if build:
            version = botzip.build(zip_path, server.url, bot_config=bot_config)
        else:
            from bot import archive

            version = archive.digest_of_zip(str(zip_path))
        log = tmp_path / f"{name}-{len(started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [python, str(zip_path), "start_bot"],
                cwd=directory,
                env=bot_env(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        bot = BotProcess(proc, directory, log, version)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        if bot.proc.poll() is None:
            bot.proc.kill()
        bot.proc.wait(10)
    kill_processes_under(tmp_path)
