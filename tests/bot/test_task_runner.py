"""Running tasks: output at offsets, exit codes, timeouts, cancellation."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import signal
import sys
import time
from typing import Any

import pytest

from tests.bot.conftest import PY39, StartBot, is_alive, wait_until
from tests.bot.fakeserver import FakeServer, Recorded, json_reply, manifest

PY = sys.executable
T1 = "1a2b3c4d5e6f7001"
T2 = "1a2b3c4d5e6f7011"
FIRST_UPDATE_KEYS = {"cost_usd", "id", "session", "task_id"}


def py(code: str) -> list[str]:
    """A command running `code` with this test's Python."""
    return [PY, "-c", code]


@pytest.mark.parametrize(
    "python",
    [
        pytest.param(PY, id="current"),
        pytest.param(
            str(PY39),
            id="python3.9",
            marks=pytest.mark.skipif(not PY39.exists(), reason="no Python 3.9 interpreter here"),
        ),
    ],
)
def test_tasks_report_output_and_exit_codes(
    server: FakeServer, start_bot: StartBot, python: str
) -> None:
    """claim, a bare first update, then the output and exit code (0, then 3) in the final."""
    code = "import os; print('hello', os.environ['FROM_HOOK'], os.environ['BOT_FILE_EXISTS'])"
    server.run(manifest(T1, py(code)))
    server.run(manifest(T2, py("import sys; sys.exit(3)")))
    bot = start_bot(python=python)
    final = server.wait_final(T1).body
    assert final["exit_code"] == 0
    assert final["duration"] >= 0
    assert final["bot_overhead"] >= 0
    assert final["hard_timeout"] is False
    assert final["io_timeout"] is False
    assert server.output(T1) == f"hello {T1} True\n".encode()
    claim = server.of("claim")[0].body
    assert claim["task_id"] == T1
    assert len(claim["claim_id"]) == 32
    assert {"dimensions", "state", "session"} <= set(claim)
    first = server.updates(T1)[0]
    assert set(first.body) == FIRST_UPDATE_KEYS
    assert first.body["cost_usd"] == 0
    assert first.headers["authorization"] == "Bearer test-token"
    assert server.wait_final(T2).body["exit_code"] == 3
    after = bot.dir / "after_task.json"
    wait_until(lambda: after.exists() and json.loads(after.read_text())["exit_code"] == 3)
    assert json.loads(after.read_text())["failure"] is True
    # on_after_task runs before the bot deletes w/, so the deletion may lag the hook.
    wait_until(lambda: not (bot.dir / "w").exists())


def test_task_environment_and_working_directory(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """Manifest env and env_prefixes, SWARMING_* variables and relative_cwd reach the command."""
    code = (
        "import json, os; e = os.environ; print(json.dumps({'cwd': os.getcwd(), "
        "'foo': e['FOO'], 'path0': e['PATH'].split(os.pathsep)[0], 'task': e['SWARMING_TASK_ID'], "
        "'bot': e['SWARMING_BOT_ID'], 'headless': e['SWARMING_HEADLESS'], "
        "'server': e['SWARMING_SERVER']}))"
    )
    server.run(
        manifest(
            T1, py(code), env={"FOO": "bar"}, env_prefixes={"PATH": ["tools"]}, relative_cwd="sub"
        )
    )
    bot = start_bot()
    assert server.wait_final(T1).body["exit_code"] == 0
    seen = json.loads(server.output(T1))
    run_dir = bot.dir / "w" / "ir"
    assert seen == {
        "cwd": str(run_dir / "sub"),
        "foo": "bar",
        "path0": str(run_dir / "tools"),
        "task": T1,
        "bot": "test-bot",
        "headless": "1",
        "server": server.url,
    }


def test_megabytes_of_output_arrive_byte_exact(server: FakeServer, start_bot: StartBot) -> None:
    """3 MB of output come in contiguous chunks of at most 250 000 bytes."""
    expected = bytes(range(256)) * 12_000
    server.run(manifest(T1, py("import sys; sys.stdout.buffer.write(bytes(range(256)) * 12000)")))
    start_bot()
    assert server.wait_final(T1).body["exit_code"] == 0
    assert server.output(T1) == expected
    offset = 0
    for rec in server.updates(T1):
        if "output" in rec.body:
            chunk = base64.b64decode(rec.body["output"])
            assert rec.body["output_chunk_start"] == offset
            assert len(chunk) <= 250_000
            offset += len(chunk)
    assert offset == len(expected)


def test_hard_timeout_stops_the_whole_process_group(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """The command dies of SIGTERM, the flag is set, and a grandchild ignoring SIGTERM is killed."""
    pid_file = tmp_path / "grandchild.pid"
    script = "(trap '' TERM; exec sleep 1000) & echo $! > \"$PID_FILE\"; echo started; wait"
    server.run(
        manifest(
            T1,
            ["sh", "-c", script],
            hard_timeout=1,
            grace_period=1,
            env={"PID_FILE": str(pid_file)},
        )
    )
    start_bot()
    final = server.wait_final(T1).body
    assert (final["exit_code"], final["hard_timeout"], final["io_timeout"]) == (-15, True, False)
    assert server.output(T1) == b"started\n"
    grandchild = int(pid_file.read_text())
    wait_until(lambda: not is_alive(grandchild), timeout=5)


def test_io_timeout_stops_a_silent_task(server: FakeServer, start_bot: StartBot) -> None:
    """No output for io_timeout seconds: SIGTERM, exit -15 and io_timeout true."""
    server.run(manifest(T1, ["sh", "-c", "echo hi; sleep 1000"], io_timeout=1, grace_period=1))
    start_bot()
    final = server.wait_final(T1).body
    assert (final["exit_code"], final["hard_timeout"], final["io_timeout"]) == (-15, False, True)
    assert 1 <= final["duration"] < 10


def test_must_stop_kills_a_running_task(server: FakeServer, start_bot: StartBot) -> None:
    """must_stop on an output update stops the task with no timeout flag."""

    def answer(rec: Recorded) -> dict[str, Any]:
        return {"ok": True, "must_stop": "output" in rec.body, "stop_reason": "killed"}

    server.task_update = answer
    server.run(manifest(T1, ["sh", "-c", "echo started; sleep 1000"]))
    start_bot()
    final = server.wait_final(T1).body
    assert (final["exit_code"], final["hard_timeout"], final["io_timeout"]) == (-15, False, False)
    assert final["duration"] < 15


def test_must_stop_on_the_first_update_cancels_before_start(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """The command never runs; the second and last update is {canceled: true}."""
    marker = tmp_path / "ran"
    server.task_update = lambda rec: {"ok": True, "must_stop": True}
    server.run(manifest(T1, ["touch", str(marker)]))
    start_bot()
    final = server.wait_final(T1)
    assert set(final.body) == FIRST_UPDATE_KEYS | {"canceled"}
    assert final.body["canceled"] is True
    server.wait_for(lambda r: r.endpoint == "poll" and r.ts > final.ts)
    assert len(server.updates(T1)) == 2
    assert not marker.exists()


def test_a_failed_update_is_resent_at_the_same_offset(
    server: FakeServer, start_bot: StartBot
) -> None:
    """A refused final update is sent again with the same chunk; nothing is lost."""
    refused: list[Recorded] = []

    def answer(rec: Recorded) -> Any:
        if "exit_code" in rec.body and not refused:
            refused.append(rec)
            return json_reply({"error": "try later"}, 400)
        return {"ok": True, "must_stop": False}

    server.task_update = answer
    server.run(manifest(T1, py("print('x' * 1000)")))
    start_bot()
    server.wait_for(
        lambda r: r.endpoint == "task_update" and "exit_code" in r.body and r is not refused[0]
    )
    finals = [r.body for r in server.updates(T1) if "exit_code" in r.body]
    assert len(finals) == 2
    assert finals[0]["output"] == finals[1]["output"]
    assert finals[1]["output_chunk_start"] == 0
    assert server.output(T1) == b"x" * 1000 + b"\n"


def test_a_skipped_claim_drops_the_task(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """claim answering skip: no task_update, no command, back to polling."""
    marker = tmp_path / "ran"
    server.claim = lambda rec: {"cmd": "skip", "reason": "taken by another bot"}
    server.run(manifest(T1, ["touch", str(marker)]))
    start_bot()
    claim = server.wait_for(lambda r: r.endpoint == "claim")
    server.wait_for(lambda r: r.endpoint == "poll" and r.ts > claim.ts)
    assert server.updates(T1) == []
    assert not marker.exists()


def test_an_unrunnable_manifest_is_a_task_error(server: FakeServer, start_bot: StartBot) -> None:
    """An empty command is reported through task_error, with no task_update."""
    server.run(manifest(T1, []))
    start_bot()
    error = server.wait_for(lambda r: r.endpoint == "task_error")
    assert error.name == f"task_error/{T1}"
    assert error.body["task_id"] == T1
    assert "command" in error.body["message"]
    assert error.body["client_error"] == {"missing_cas": [], "missing_cipd": []}
    assert server.updates(T1) == []


def test_a_task_ends_when_its_bot_is_killed(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """With the bot SIGKILLed alone, its runner stops the command and sends task_error."""
    server.run(manifest(T1, ["sh", "-c", "echo started; sleep 1000"], grace_period=1))
    bot = start_bot()
    pid_file = bot.dir / "w" / "command.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
    command = int(pid_file.read_text())
    bot.signal(signal.SIGKILL)
    error = server.wait_for(lambda r: r.endpoint == "task_error")
    assert "bot process died" in error.body["message"]
    assert not any("exit_code" in r.body for r in server.updates(T1))
    wait_until(lambda: not is_alive(command), timeout=5)


def test_a_restarted_bot_kills_what_a_killed_bot_left_running(
    server: FakeServer, start_bot: StartBot
) -> None:
    """After `kill -9` of the bot's whole process group, the next bot stops the orphaned task."""
    server.run(manifest(T1, ["sh", "-c", "sleep 1000"], grace_period=1))
    bot = start_bot()
    pid_file = bot.dir / "w" / "command.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
    command = int(pid_file.read_text())
    os.killpg(bot.pid, signal.SIGKILL)
    bot.wait()
    assert is_alive(command)
    start_bot(build=False)
    wait_until(lambda: not is_alive(command), timeout=10)
    server.wait_for(lambda r: r.endpoint == "handshake" and len(server.of("handshake")) == 2)
    assert not (bot.dir / "w").exists()


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of `pid`, in clock ticks."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_a_task_that_closes_its_output_keeps_being_watched(
    server: FakeServer, start_bot: StartBot
) -> None:
    """Closing stdout early ends neither the task nor its timeouts, and the runner idles."""
    server.run(manifest(T1, ["sh", "-c", "echo bye; exec >&- 2>&-; sleep 1000"], hard_timeout=3))
    bot = start_bot()
    server.wait_for(lambda r: r.endpoint == "task_update")
    children = pathlib.Path(f"/proc/{bot.pid}/task/{bot.pid}/children")
    wait_until(lambda: children.read_text().strip() != "")
    runner = int(children.read_text().split()[0])
    before = cpu_ticks(runner)
    time.sleep(1)
    assert cpu_ticks(runner) - before < 30  # a busy loop would burn ~100 ticks a second
    final = server.wait_final(T1).body
    assert (final["exit_code"], final["hard_timeout"]) == (-15, True)
    assert server.output(T1) == b"bye\n"
