"""`drover trigger` and `drover collect` against a real server, with real bots where a
task must run."""

from __future__ import annotations

import json
import os
import pathlib
import pty
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.cli.conftest import ROOT, Cli
from tests.e2e.conftest import BotProcess, DroverServer


@pytest.mark.e2e
def test_trigger_collect_prints_output_and_exits_with_the_task_exit_code(
    cli: Cli, start_bot: Callable[..., BotProcess]
) -> None:
    """`trigger --collect` streams a real task's output and exits with its exit code."""
    start_bot("bot1")
    script = "import sys; print('hi'); sys.exit(3)"
    run = cli("trigger", "--collect", "--", "python3", "-c", script)
    assert run.returncode == 3, run.stderr
    assert run.stdout == "hi\n"
    # stderr is not a terminal here: the task's URL, and no progress line.
    assert "/api/v1/tasks/" in run.stderr
    assert "\x1b[K" not in run.stderr


@pytest.mark.e2e
def test_collect_streams_a_running_task_and_shows_progress_on_a_terminal(
    drover: DroverServer, cli: Cli, start_bot: Callable[..., BotProcess]
) -> None:
    """`collect` writes output as it grows and draws a status line when stderr is a TTY."""
    start_bot("bot1")
    script = "import time; print('first', flush=True); time.sleep(2); print('second')"
    task_id = cli("trigger", "--", "python3", "-c", script).stdout.strip()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--server", drover.url, "collect", task_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    err = _drain(master)
    assert proc.returncode == 0
    assert out == b"first\nsecond\n"
    assert b"\x1b[K" in err
    assert b"RUNNING" in err or b"PENDING" in err


def _drain(fd: int) -> bytes:
    """Everything written to a pty whose other side is closed."""
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except OSError:
        pass  # EIO: the writer has gone and the buffer is empty.
    finally:
        os.close(fd)
    return b"".join(chunks)


@pytest.mark.e2e
def test_collect_of_a_timed_out_task_exits_1_and_says_why(
    cli: Cli, start_bot: Callable[..., BotProcess]
) -> None:
    """A task killed by its hard timeout makes `trigger --collect` exit 1 with the state."""
    start_bot("bot1")
    script = "import time; print('start', flush=True); time.sleep(60)"
    run = cli(
        "trigger", "--collect", "--hard-timeout", "1", "--grace-period", "1", "--",
        "python3", "-c", script,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stdout == "start\n"
    assert "ended TIMED_OUT (hard timeout)" in run.stderr


def test_trigger_sends_every_option_in_the_request(
    drover: DroverServer, cli: Cli, tmp_path: pathlib.Path
) -> None:
    """Each trigger option lands in its field of the stored request, fallback slice last."""
    fallback = tmp_path / "fallback.json"
    fallback.write_text(
        json.dumps(
            {
                "expiration_secs": 60,
                "properties": {
                    "command": ["echo", "fallback"],
                    "dimensions": [{"key": "pool", "value": "default"}],
                },
            }
        )
    )
    run = cli(
        "trigger", "--name", "build", "-d", "os=Linux", "--tag", "branch:main",
        "--env", "A=b=c", "--priority", "42", "--hard-timeout", "90", "--io-timeout", "30",
        "--grace-period", "5", "--expiration", "120", "--wait-for-capacity", "--idempotent",
        "--max-retries", "2", "--user", "alice", "--slice-json", str(fallback),
        "--", "echo", "--not-an-option",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    task_id = run.stdout.strip()
    request = drover.call("GET", f"/api/v1/tasks/{task_id}/request")
    assert (request["name"], request["priority"], request["max_retries"]) == ("build", 42, 2)
    assert request["user"] == "alice"
    assert "branch:main" in request["tags"]
    first, second = request["task_slices"]
    props = first["properties"]
    assert props["command"] == ["echo", "--not-an-option"]
    assert sorted((d["key"], d["value"]) for d in props["dimensions"]) == [
        ("os", "Linux"),
        ("pool", "default"),
    ]
    assert props["env"] == [{"key": "A", "value": "b=c"}]
    timeouts = (
        props["execution_timeout_secs"],
        props["io_timeout_secs"],
        props["grace_period_secs"],
    )
    assert timeouts == ("90", "30", "5")
    assert props["idempotent"] is True
    assert (first["expiration_secs"], first["wait_for_capacity"]) == ("120", True)
    assert second["properties"]["command"] == ["echo", "fallback"]


def test_trigger_json_output_is_the_api_answer(drover: DroverServer, cli: Cli) -> None:
    """`trigger --json` prints the creation answer, and `task --json` the task's documents."""
    run = cli("trigger", "--json", "--wait-for-capacity", "--", "echo", "hi")
    created = json.loads(run.stdout)
    task_id = created["task_id"]
    assert created["task_result"]["state"] == "PENDING"
    shown = json.loads(cli("task", "--json", task_id).stdout)
    assert shown["result"] == drover.result(task_id)
    assert shown["request"]["task_id"] == task_id
    assert shown["pending"]["state"] == "PENDING"


def test_collect_gives_up_after_its_timeout(cli: Cli) -> None:
    """`collect --timeout` on a task that stays pending exits 1 and says it is still pending."""
    task_id = cli("trigger", "--wait-for-capacity", "--", "echo").stdout.strip()
    run = cli("collect", "--timeout", "0.5", task_id)
    assert run.returncode == 1
    assert f"task {task_id} is still PENDING" in run.stderr


def test_collect_of_a_canceled_task_exits_1(cli: Cli) -> None:
    """A task that ended without running exits 1 with its state named."""
    task_id = cli("trigger", "--wait-for-capacity", "--", "echo").stdout.strip()
    assert cli("cancel", task_id).returncode == 0
    run = cli("collect", task_id)
    assert run.returncode == 1
    assert run.stderr == f"drover: task {task_id} ended CANCELED\n"


def test_collect_json_prints_the_final_result(drover: DroverServer, cli: Cli) -> None:
    """`collect --json` prints the ended task's result document instead of its output."""
    task_id = cli("trigger", "--wait-for-capacity", "--", "echo").stdout.strip()
    cli("cancel", task_id)
    run = cli("collect", "--json", task_id)
    assert json.loads(run.stdout) == drover.result(task_id)
    assert run.returncode == 1


def test_slice_file_that_is_not_json_is_refused(cli: Cli, tmp_path: pathlib.Path) -> None:
    """A --slice-json file that does not parse exits 1 naming the file, creating nothing."""
    bad = tmp_path / "slice.json"
    bad.write_text("{nope")
    run = cli("trigger", "--slice-json", str(bad))
    assert run.returncode == 1
    assert f"cannot read the slice in {bad}" in run.stderr
    assert cli("tasks", "--json").stdout.count("task_id") == 0


def test_trigger_service_account_the_pool_does_not_allow_is_refused(cli: Cli) -> None:
    """--service-account goes into the request; an account pools.cfg does not allow fails."""
    run = cli("trigger", "--service-account", "ci@example.com", "--wait-for-capacity", "--", "true")
    assert run.returncode == 1
    assert "ci@example.com" in run.stderr
    assert "allowed_service_account" in run.stderr
