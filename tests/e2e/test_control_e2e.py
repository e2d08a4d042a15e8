"""Live control of running tasks through the client API, with a real server and real bots:
pause and resume (SIGSTOP / SIGCONT on our bot), restart, kill, and the automatic
retry of a run lost with its machine."""

from __future__ import annotations

import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import BotProcess, DroverServer, kill_tree, wait_for

pytestmark = pytest.mark.e2e

PY = sys.executable
StartBot = Callable[..., BotProcess]


def proc_state(pid: int) -> str:
    """The one-letter state of `pid` from /proc (T = stopped, Z = zombie), "" once gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    return proc_state(pid) not in ("", "Z")


def pid_from(path: pathlib.Path) -> int:
    """The PID a task wrote to `path`, once it has."""
    wait_for(lambda: path.exists() and path.read_text().strip() != "", 30, f"{path}")
    return int(path.read_text())


def control(drover: DroverServer, task_id: str, verb: str, body: Any = None) -> Any:
    """POSTs `/api/v1/tasks/{task_id}:{verb}`."""
    return drover.call("POST", f"/api/v1/tasks/{task_id}:{verb}", body if body else {})


def counter(pid_file: pathlib.Path, count: int) -> list[str]:
    """A command that writes its PID to `pid_file`, then prints 0..count-1 every 0.2 s."""
    script = (
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        f"for i in range({count}):\n"
        "    print(i, flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    return [PY, "-c", script]


def once_then_succeed(marker: pathlib.Path) -> list[str]:
    """A command that, on its first run, writes its PID to `marker` and prints forever;
    on any later run (the marker exists) it prints "second run" and exits 0."""
    script = (
        "import os, sys, time\n"
        f"marker = {str(marker)!r}\n"
        "if os.path.exists(marker):\n"
        "    print('second run')\n"
        "    sys.exit(0)\n"
        "open(marker, 'w').write(str(os.getpid()))\n"
        "while True:\n"
        "    print('first run', flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    return [PY, "-c", script]


def test_pause_stops_the_process_and_its_clock(
    drover: DroverServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """A paused task is in state T with its output frozen, resumes, and completes even
    though run time plus paused time exceed its execution timeout."""
    start_bot("bot1")
    pid_file = tmp_path / "task.pid"
    # 50 ticks of 0.2 s: about 10 s of running against a 14 s execution timeout;
    # the pause below adds at least 6 s of wall time. The 3 s I/O timeout would
    # fire during the pause if its clock ran.
    task_id = drover.create_task(
        counter(pid_file, 50), properties={"execution_timeout_secs": 14, "io_timeout_secs": 3}
    )
    drover.wait(task_id, ("RUNNING",), timeout=30)
    pid = pid_from(pid_file)
    wait_for(lambda: b"1\n" in drover.log(task_id), 30, "the first output")
    control(drover, task_id, "pause")
    assert drover.result(task_id)["paused"] is True
    wait_for(lambda: proc_state(pid) == "T", 15, "the task to be stopped")
    # Output printed just before the stop may still arrive with the next heartbeat.
    time.sleep(3)
    frozen = drover.log(task_id)
    time.sleep(3)
    assert drover.log(task_id) == frozen
    assert proc_state(pid) == "T"
    assert drover.result(task_id)["state"] == "RUNNING"
    control(drover, task_id, "resume")
    wait_for(lambda: proc_state(pid) not in ("T", ""), 10, "the task to continue")
    wait_for(lambda: len(drover.log(task_id)) > len(frozen), 10, "output after the resume")
    result = drover.wait(task_id, timeout=30)
    assert (result["state"], result["exit_code"]) == ("COMPLETED", "0")
    assert (result["hard_timeout"], result["io_timeout"], result["paused"]) == (False, False, False)
    # The reported duration is wall time, so it exceeds the execution timeout.
    assert result["duration"] > 14
    assert drover.log(task_id) == b"".join(b"%d\n" % i for i in range(50))


def test_restart_runs_the_task_again_as_try_2(
    drover: DroverServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """A restarted running task ends its first run and completes as try 2."""
    start_bot("bot1")
    marker = tmp_path / "first.pid"
    task_id = drover.create_task(once_then_succeed(marker))
    drover.wait(task_id, ("RUNNING",), timeout=30)
    first = pid_from(marker)
    assert drover.result(task_id)["try_number"] == 1
    control(drover, task_id, "restart")
    result = drover.wait(task_id, timeout=60)
    assert (result["state"], result["exit_code"]) == ("COMPLETED", "0")
    assert result["try_number"] == 2
    assert not is_alive(first)
    assert b"second run" in drover.log(task_id)


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_kill_ends_a_running_task(
    drover: DroverServer, start_bot: StartBot, tmp_path: pathlib.Path, paused: bool
) -> None:
    """Cancel with kill_running ends a running task KILLED, paused or not, with its process gone."""
    start_bot("bot1")
    pid_file = tmp_path / "task.pid"
    task_id = drover.create_task(counter(pid_file, 100_000), properties={"grace_period_secs": 30})
    drover.wait(task_id, ("RUNNING",), timeout=30)
    pid = pid_from(pid_file)
    if paused:
        control(drover, task_id, "pause")
        wait_for(lambda: proc_state(pid) == "T", 15, "the task to be stopped")
    asked = time.monotonic()
    control(drover, task_id, "cancel", {"kill_running": True})
    assert drover.wait(task_id, timeout=30)["state"] == "KILLED"
    # SIGTERM (then SIGCONT if paused) ends it well before the 30 s grace period.
    assert time.monotonic() - asked < 20
    wait_for(lambda: not is_alive(pid), 5, "the task's process to be gone")


@pytest.mark.timeout(240)
def test_a_run_lost_with_its_machine_is_retried_on_another_bot(
    drover: DroverServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """After kill -9 of bot A and everything it started, the task completes on bot B as try 2."""
    bot_a = start_bot("bot1")
    marker = tmp_path / "first.pid"
    task_id = drover.create_task(
        once_then_succeed(marker), max_retries=1, bot_ping_tolerance_secs=60
    )
    drover.wait(task_id, ("RUNNING",), timeout=30)
    first = pid_from(marker)
    assert drover.result(task_id)["bot_id"] == "bot1"
    kill_tree(bot_a.proc.pid)
    wait_for(lambda: not is_alive(first), 10, "the first run to die with its machine")
    start_bot("bot2")
    # The server notices the loss only after the 60 s ping tolerance.
    result = drover.wait(task_id, timeout=150)
    assert (result["state"], result["exit_code"]) == ("COMPLETED", "0")
    assert result["try_number"] == 2
    assert result["bot_id"] == "bot2"
    assert b"second run" in drover.log(task_id)
