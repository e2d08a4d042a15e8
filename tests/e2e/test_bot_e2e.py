"""A real server and real bots that downloaded their code from it (issue: bundled bot)."""

from __future__ import annotations

import pathlib
import signal
import sys
from collections.abc import Callable

import pytest

from tests.e2e.conftest import BotProcess, DroverServer, kill_tree, wait_for

pytestmark = pytest.mark.e2e

PY = sys.executable


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid_file_written(path: pathlib.Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip() != "", 30, f"{path}")
    return int(path.read_text())


def test_exit_codes_and_output(drover: DroverServer, start_bot: Callable[..., BotProcess]) -> None:
    """Exit 0 is COMPLETED with its output; exit 3 is COMPLETED and marked failed."""
    start_bot("bot1")
    ok = drover.create_task([PY, "-c", "print('hello from the task')"])
    bad = drover.create_task([PY, "-c", "import sys; print('bye'); sys.exit(3)"])
    done = drover.wait(ok)
    assert done["state"] == "COMPLETED"
    assert done["exit_code"] == "0"
    assert done["failure"] is False
    assert b"hello from the task\n" in drover.log(ok)
    failed = drover.wait(bad)
    assert failed["state"] == "COMPLETED"
    assert failed["exit_code"] == "3"
    assert failed["failure"] is True


def test_five_megabytes_of_output_arrive_byte_for_byte(
    drover: DroverServer, start_bot: Callable[..., BotProcess]
) -> None:
    """A task printing 5 MB of varied bytes has exactly that log."""
    start_bot("bot1")
    script = (
        "import sys, hashlib\n"
        "out = sys.stdout.buffer\n"
        "for i in range(5 * 1024):\n"
        "    out.write(hashlib.sha256(str(i).encode()).digest() * 32)\n"
    )
    task_id = drover.create_task([PY, "-c", script])
    assert drover.wait(task_id, timeout=120)["state"] == "COMPLETED"
    import hashlib

    expected = b"".join(hashlib.sha256(str(i).encode()).digest() * 32 for i in range(5 * 1024))
    assert drover.log(task_id) == expected


def test_hard_and_io_timeouts_kill_the_whole_group(
    drover: DroverServer, start_bot: Callable[..., BotProcess], tmp_path: pathlib.Path
) -> None:
    """Hard and I/O timeouts end TIMED_OUT with their flag, and no process of the task survives."""
    start_bot("bot1")
    hard_pid = tmp_path / "hard.pid"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen(['sleep', '1000'])\n"
        f"open({str(hard_pid)!r}, 'w').write(str(p.pid))\n"
        "while True:\n"
        "    print('tick', flush=True)\n"
        "    time.sleep(0.5)\n"
    )
    hard = drover.create_task([PY, "-c", script], properties={"execution_timeout_secs": 4})
    result = drover.wait(hard)
    assert result["state"] == "TIMED_OUT"
    assert result["hard_timeout"] is True
    assert not _alive(_pid_file_written(hard_pid))

    io_pid = tmp_path / "io.pid"
    quiet = (
        "import subprocess, time\n"
        f"p = subprocess.Popen(['sleep', '1000'])\n"
        f"open({str(io_pid)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(1000)\n"
    )
    io = drover.create_task([PY, "-c", quiet], properties={"io_timeout_secs": 3})
    result = drover.wait(io)
    assert result["state"] == "TIMED_OUT"
    assert result["io_timeout"] is True
    assert result["hard_timeout"] is False
    assert not _alive(_pid_file_written(io_pid))


def test_cancel_running_and_pending(
    drover: DroverServer, start_bot: Callable[..., BotProcess], tmp_path: pathlib.Path
) -> None:
    """Cancel while running ends KILLED with no process left; cancel while pending is CANCELED."""
    start_bot("bot1")
    pid_file = tmp_path / "run.pid"
    script = (
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "while True:\n"
        "    print('working', flush=True)\n"
        "    time.sleep(0.5)\n"
    )
    running = drover.create_task([PY, "-c", script])
    pending = drover.create_task([PY, "-c", "print('never')"])
    drover.wait(running, ("RUNNING",))
    pid = _pid_file_written(pid_file)
    drover.call("POST", f"/api/v1/tasks/{pending}:cancel", {})
    assert drover.result(pending)["state"] == "CANCELED"
    drover.call("POST", f"/api/v1/tasks/{running}:cancel", {"kill_running": True})
    assert drover.wait(running)["state"] == "KILLED"
    assert not _alive(pid)
    assert b"working" in drover.log(running)


def test_kill_9_of_a_bot_ends_its_task_bot_died(
    drover: DroverServer, start_bot: Callable[..., BotProcess], tmp_path: pathlib.Path
) -> None:
    """A bot machine dying mid-task (SIGKILL to the bot and every process it started)
    leaves its task BOT_DIED after the ping tolerance."""
    bot = start_bot("bot1")
    script = "import time\nwhile True:\n    print('alive', flush=True)\n    time.sleep(0.5)\n"
    task_id = drover.create_task([PY, "-c", script], bot_ping_tolerance_secs=60)
    drover.wait(task_id, ("RUNNING",))
    wait_for(lambda: b"alive" in drover.log(task_id), 30, "output")
    kill_tree(bot.proc.pid)
    result = drover.wait(task_id, timeout=90)
    assert result["state"] == "BOT_DIED"


def test_sigterm_to_an_idle_bot_shuts_it_down(
    drover: DroverServer, start_bot: Callable[..., BotProcess]
) -> None:
    """SIGTERM to an idle bot sends bot_shutdown and exits cleanly."""
    bot = start_bot("bot1")
    wait_for(lambda: _has_bot(drover, "bot1"), 30, "the bot to connect")
    bot.proc.send_signal(signal.SIGTERM)
    assert bot.proc.wait(30) == 0
    assert "bot_shutdown" in [e["event_type"] for e in drover.events("bot1")]


def _has_bot(drover: DroverServer, bot_id: str) -> bool:
    try:
        drover.bot(bot_id)
    except OSError:
        return False
    return True
