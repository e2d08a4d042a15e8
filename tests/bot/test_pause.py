"""Pause and resume of a running task: SIGSTOP/SIGCONT, and timeouts that stop while paused."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.stream import OutputStream
from bot.supervisor import Supervisor
from tests.bot.conftest import BotProcess, StartBot, is_alive, wait_until
from tests.bot.fakeserver import FakeServer, Recorded, manifest

PY = sys.executable
T1 = "1a2b3c4d5e6f7001"


def proc_state(pid: int) -> str:
    """The one-letter state of `pid` from /proc (T = stopped), or "" once it is gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def command_pid(bot: BotProcess) -> int:
    """The PID of the running task's command, once the runner has written it."""
    pid_file = bot.dir / "w" / "command.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
    return int(pid_file.read_text())


class Control:
    """task_update answers driven by the test: `paused` and `must_stop` as currently set."""

    def __init__(self, paused: bool = False) -> None:
        self.paused = paused
        self.must_stop = False
        self.lock = threading.Lock()
        # When each answer was given and what it said.
        self.answers: list[tuple[float, bool]] = []

    def __call__(self, rec: Recorded) -> dict[str, Any]:
        with self.lock:
            self.answers.append((time.monotonic(), self.paused))
            return {"ok": True, "must_stop": self.must_stop, "paused": self.paused}

    def set(self, *, paused: bool | None = None, must_stop: bool | None = None) -> float:
        """Changes the next answers; returns when."""
        with self.lock:
            if paused is not None:
                self.paused = paused
            if must_stop is not None:
                self.must_stop = must_stop
            return time.monotonic()

    def first_answer_after(self, ts: float) -> float:
        """When the first answer after `ts` was sent (waits for it)."""
        wait_until(lambda: any(t > ts for t, _ in self.answers), timeout=10)
        return min(t for t, _ in self.answers if t > ts)


def test_a_paused_task_is_stopped_and_resumes(server: FakeServer, start_bot: StartBot) -> None:
    """paused: true puts the command in state T; paused: false lets it run on to completion."""
    control = Control()
    server.task_update = control
    counter = "import time\nfor i in range(80):\n    print(i, flush=True)\n    time.sleep(0.1)\n"
    server.run(manifest(T1, [PY, "-c", counter]))
    bot = start_bot()
    pid = command_pid(bot)
    control.set(paused=True)
    wait_until(lambda: proc_state(pid) == "T", timeout=15)
    time.sleep(1.0)
    assert proc_state(pid) == "T"
    assert not any("exit_code" in r.body for r in server.updates(T1))
    resumed = control.set(paused=False)
    wait_until(lambda: proc_state(pid) not in ("T", ""), timeout=5)
    final = server.wait_final(T1)
    assert final.body["exit_code"] == 0
    assert server.output(T1) == b"".join(b"%d\n" % i for i in range(80))
    # While paused the runner asked every ~2 s whether to resume.
    assert control.first_answer_after(resumed) - resumed < 3.0


def test_the_hard_timeout_does_not_run_while_paused(
    server: FakeServer, start_bot: StartBot
) -> None:
    """Paused from the start for 4 s, a 2 s hard timeout fires only 2 s after the resume."""
    control = Control(paused=True)
    server.task_update = control
    server.run(manifest(T1, ["sleep", "1000"], hard_timeout=2, grace_period=1))
    bot = start_bot()
    pid = command_pid(bot)
    wait_until(lambda: proc_state(pid) == "T", timeout=5)
    time.sleep(4.0)
    assert is_alive(pid)
    assert not any("exit_code" in r.body for r in server.updates(T1))
    # The runner tells the bot, whose last-resort timeout must allow for the pause.
    paused_file = bot.dir / "w" / "task_paused_secs"
    wait_until(lambda: paused_file.exists() and float(paused_file.read_text()) >= 5.0, timeout=5)
    resumed = control.first_answer_after(control.set(paused=False))
    final = server.wait_final(T1)
    assert (final.body["exit_code"], final.body["hard_timeout"]) == (-15, True)
    assert final.ts - resumed >= 1.5
    # duration is wall time: the paused seconds are part of it.
    assert final.body["duration"] >= 5.5
    wait_until(lambda: not is_alive(pid), timeout=5)


def test_must_stop_while_paused_kills_promptly(server: FakeServer, start_bot: StartBot) -> None:
    """A stopped command gets SIGTERM then SIGCONT, so it dies at once, not after its grace."""
    control = Control(paused=True)
    server.task_update = control
    server.run(manifest(T1, ["sleep", "1000"], grace_period=60))
    bot = start_bot()
    pid = command_pid(bot)
    wait_until(lambda: proc_state(pid) == "T", timeout=5)
    stop = control.set(must_stop=True)
    final = server.wait_final(T1)
    assert final.body["exit_code"] == -15
    assert final.ts - stop < 10
    assert not is_alive(pid)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A `sleep` leading its own process group, killed at teardown."""
    proc = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(5)


def test_supervisor_pause_clock(sleeper: subprocess.Popen[bytes]) -> None:
    """On a fake clock: 100 s paused do not count toward a 10 s hard or a 5 s I/O timeout."""
    stream = OutputStream(clock=lambda: 0.0)
    sup = Supervisor(
        sleeper, stream, hard_timeout=10, io_timeout=5, grace_period=1, clock=lambda: 0.0
    )
    sup.check(1.0)
    sup.set_paused(True)
    sup.check(2.0)
    wait_until(lambda: proc_state(sleeper.pid) == "T", timeout=5)
    assert sup.is_paused
    sup.check(100.0)
    assert not sup.hard_timeout
    assert not sup.io_timeout
    sup.set_paused(False)
    sup.check(102.0)
    wait_until(lambda: proc_state(sleeper.pid) == "S", timeout=5)
    assert sup.paused_for(200.0) == 100.0
    # The last output (at fake time 0) is older than the resume, which restarted the I/O clock.
    sup.check(106.9)
    assert not sup.io_timeout
    sup.check(107.0)
    assert sup.io_timeout
    assert sleeper.wait(5) == -signal.SIGTERM


def test_supervisor_hard_timeout_counts_only_running_time(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """Run 4 s, pause 50 s, run again: the 10 s hard timeout fires at 60 s, not before."""
    sup = Supervisor(
        sleeper, OutputStream(), hard_timeout=10, io_timeout=0, grace_period=1, clock=lambda: 0.0
    )
    sup.set_paused(True)
    sup.check(4.0)
    sup.set_paused(False)
    sup.check(54.0)
    sup.check(59.9)
    assert not sup.hard_timeout
    sup.check(60.0)
    assert sup.hard_timeout
    assert sleeper.wait(5) == -signal.SIGTERM
