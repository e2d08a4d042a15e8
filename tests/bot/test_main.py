"""The bot process against a scripted server: handshake, poll loop, commands, signals."""

from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from bot import archive
from tests.bot import botzip
from tests.bot.conftest import BOT_ID, StartBot, bot_env, wait_until
from tests.bot.fakeserver import FakeServer, Recorded, manifest, sleep

T1 = "1a2b3c4d5e6f7001"


def test_startup_pings_handshakes_and_polls_with_merged_dimensions(
    server: FakeServer, start_bot: StartBot
) -> None:
    """The handshake reports the bot's own dimensions; polls add bots.cfg's and bot_config."""
    bot = start_bot()
    poll = server.wait_for(
        lambda r: r.endpoint == "poll" and r.body["state"]["sleep_streak"] >= 1
    ).body
    ping, handshake = server.requests[0], server.of("handshake")[0]
    assert ping.name == "server_ping"
    assert "x-luci-swarming-bot-id" not in ping.headers
    assert set(handshake.body) == {"dimensions", "session_id", "state", "version"}
    assert re.fullmatch(rf"[0-9a-f]{{32}}/{bot.pid}", handshake.body["session_id"])
    assert handshake.body["version"] == bot.version
    assert handshake.body["dimensions"]["pool"] == ["default"]
    assert "bot_config" not in handshake.body["dimensions"]
    assert set(poll) == {"dimensions", "request_uuid", "session", "state", "version"}
    assert poll["dimensions"]["id"] == [BOT_ID]
    assert poll["dimensions"]["pool"] == ["testpool"]
    assert poll["dimensions"]["group"] == ["g1"]
    assert poll["dimensions"]["bot_config"] == ["test_config.py"]
    assert poll["state"]["bot_config"] == {"name": "test_config.py", "revision": "rev1"}
    assert poll["state"]["base_hooks"] is True
    assert "quarantined" not in poll["state"]
    assert poll["session"] == "s-handshake"
    assert poll["version"] == bot.version
    # Deployed as swarming_bot.zip, it runs from the first update slot.
    assert (bot.dir / "swarming_bot.1.zip").exists()


def test_sessions_are_adopted_from_every_answer(server: FakeServer, start_bot: StartBot) -> None:
    """poll, claim and task_update answers each replace the token the next call sends."""
    task = server.manifests[T1] = manifest(T1, [sys.executable, "-c", "print(1)"])
    server.polls.append({**sleep(0.1), "session": "s-poll"})
    server.polls.append({"cmd": "run", "manifest": task, "session": "s-run"})
    server.claim = lambda rec: {
        "cmd": "run",
        "manifest": server.manifests[T1],
        "session": "s-claim",
    }
    server.task_update = lambda rec: {"ok": True, "must_stop": False, "session": "s-task"}
    start_bot()
    final = server.wait_final(T1)
    polls = server.of("poll")
    assert [p.body["session"] for p in polls[:2]] == ["s-handshake", "s-poll"]
    assert server.of("claim")[0].body["session"] == "s-run"
    assert server.updates(T1)[0].body["session"] == "s-claim"
    assert final.body["session"] == "s-task"
    after = server.wait_for(lambda r: r.endpoint == "poll" and r.ts > final.ts)
    assert after.body["session"] == "s-task"


def test_request_uuid_is_reused_until_an_answer_is_usable(
    server: FakeServer, start_bot: StartBot
) -> None:
    """After a 500 and an empty answer the same uuid is sent again; after a sleep, a new one."""
    server.polls.extend([(500, "text/plain", b"down"), {}, sleep(0.1), sleep(0.1)])
    start_bot()
    server.wait_for(lambda r: r.endpoint == "poll" and len(server.of("poll")) >= 4)
    uuids = [p.body["request_uuid"] for p in server.of("poll")[:4]]
    assert uuids[0] == uuids[1] == uuids[2]
    assert uuids[3] != uuids[2]


def test_a_malformed_command_is_reported_and_the_bot_carries_on(
    server: FakeServer, start_bot: StartBot
) -> None:
    """A sleep with a string duration becomes a bot_error; polling continues."""
    server.polls.append({"cmd": "sleep", "duration": "5"})
    start_bot()
    error = server.wait_event("bot_error", "sleep duration must be a number")
    assert {"dimensions", "event", "message", "session", "state", "version"} == set(error.body)
    server.wait_for(lambda r: r.endpoint == "poll" and r.ts > error.ts)


def test_why_the_server_keeps_the_bot_idle_is_logged_once_per_change(
    server: FakeServer, start_bot: StartBot
) -> None:
    """A sleep answer's message (a quarantine, a maintenance) reaches the bot's log, once
    while it stays the same."""
    idle = {**sleep(0.1), "quarantined": True, "message": "quarantined: flaky disk"}
    server.polls.extend([idle, idle, idle, sleep(0.1), idle])
    bot = start_bot()
    server.wait_for(lambda r: r.endpoint == "poll" and len(server.of("poll")) >= 6)
    assert bot.log().count("quarantined: flaky disk") == 2, bot.log()


def test_terminate_acks_the_task_and_exits(server: FakeServer, start_bot: StartBot) -> None:
    """terminate: task_update {exit_code 0, duration 0}, bot_shutdown, exit code 0."""
    server.polls.append({"cmd": "terminate", "task_id": T1})
    bot = start_bot()
    bot.wait(expect=0)
    ack = server.updates(T1)[0].body
    assert (ack["exit_code"], ack["duration"]) == (0, 0)
    assert server.of("event")[-1].body["event"] == "bot_shutdown", bot.log()


def test_sigterm_while_idle_sends_bot_shutdown_and_exits_0(
    server: FakeServer, start_bot: StartBot
) -> None:
    """A SIGTERM between polls ends the bot cleanly."""
    server.default_poll = sleep(30)
    bot = start_bot()
    server.wait_for(lambda r: r.endpoint == "poll")
    bot.signal(signal.SIGTERM)
    bot.wait(expect=0)
    server.wait_event("bot_shutdown", "Signal was received", timeout=1)


def test_sigterm_during_a_task_reports_it_then_exits(
    server: FakeServer, start_bot: StartBot
) -> None:
    """The task is stopped, its final update sent, then bot_shutdown and exit 0."""
    server.run(manifest(T1, ["sh", "-c", "echo started; sleep 1000"], grace_period=1))
    server.task_update = lambda rec: {"ok": True, "must_stop": False}
    bot = start_bot()
    server.wait_for(lambda r: r.endpoint == "task_update")
    wait_until(lambda: (bot.dir / "w" / "command.pid").exists())
    bot.signal(signal.SIGTERM)
    bot.wait(expect=0)
    final = server.wait_final(T1, timeout=1)
    assert final.body["exit_code"] == -15
    assert not final.body["hard_timeout"]
    shutdown = server.wait_event("bot_shutdown", timeout=1)
    assert shutdown.ts > final.ts


def test_host_reboot_without_a_reboot_command_only_reports(
    server: FakeServer, start_bot: StartBot
) -> None:
    """bot_rebooting, then a bot_error saying reboot is not configured; the bot keeps polling."""
    server.polls.append({"cmd": "host_reboot", "message": "kernel update"})
    start_bot()
    assert server.wait_event("bot_rebooting").body["message"] == "kernel update"
    error = server.wait_event("bot_error", "reboot not configured")
    server.wait_for(lambda r: r.endpoint == "poll" and r.ts > error.ts)


def test_host_reboot_runs_the_operator_command(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """$DROVER_BOT_REBOOT_CMD is what "reboot" means; a failing one is reported."""
    marker = tmp_path / "rebooted"
    command = f"sh -c 'echo $0 > {marker}; exit 4' asked"
    server.polls.append({"cmd": "host_reboot", "message": "kernel update"})
    start_bot(env={"DROVER_BOT_REBOOT_CMD": command})
    server.wait_event("bot_error", "exited with 4")
    assert marker.read_text() == "asked\n"


def test_bot_restart_reexecs_and_handshakes_again(server: FakeServer, start_bot: StartBot) -> None:
    """bot_restart: is_fine, bot_shutdown "About to restart", a new session ID, the same pid."""
    server.polls.append({"cmd": "bot_restart", "message": "pick up new bots.cfg config"})
    bot = start_bot()
    server.wait_event("bot_shutdown", "About to restart: pick up new bots.cfg config")
    server.wait_for(lambda r: r.endpoint == "handshake" and len(server.of("handshake")) == 2)
    first, second = (h.body["session_id"] for h in server.of("handshake"))
    assert first != second
    assert first.endswith(f"/{bot.pid}")
    assert second.endswith(f"/{bot.pid}")
    assert bot.proc.poll() is None


def test_an_injected_script_with_a_syntax_error_quarantines(
    server: FakeServer, start_bot: StartBot
) -> None:
    """The bot keeps polling with state.quarantined naming the broken script."""
    assert isinstance(server.handshake, dict)
    server.handshake["bot_config"] = "def get_dimensions(:\n"
    bot = start_bot()
    poll = server.wait_for(lambda r: r.endpoint == "poll" and len(server.of("poll")) >= 2)
    assert "invalid injected bot_config.py" in poll.body["state"]["quarantined"]
    assert bot.proc.poll() is None


def test_injected_hooks_apply_and_a_raising_getter_quarantines(
    server: FakeServer, start_bot: StartBot
) -> None:
    """The injected get_dimensions is used; its get_state raising quarantines and is reported."""
    assert isinstance(server.handshake, dict)
    server.handshake["bot_config"] = (
        "def get_dimensions(bot):\n    d = dict(bot.dimensions)\n    d['injected'] = ['yes']\n"
        "    return d\n"
        "def get_state(bot):\n    raise RuntimeError('sensor broken')\n"
    )
    start_bot()
    poll = server.wait_for(lambda r: r.endpoint == "poll")
    assert poll.body["dimensions"]["injected"] == ["yes"]
    assert "get_state failed" in poll.body["state"]["quarantined"]
    assert "running_time" in poll.body["state"]
    server.wait_event("bot_error", "sensor broken")


def test_handshake_is_retried_with_the_same_session_id(
    server: FakeServer, start_bot: StartBot
) -> None:
    """A 503 and an empty answer are retried; every attempt carries one session_id."""
    answers: list[Any] = [(503, "text/plain", b"down"), {}]
    good = server.handshake

    def handshake(rec: Recorded) -> Any:
        return answers.pop(0) if answers else good

    server.handshake = handshake
    start_bot()
    server.wait_for(lambda r: r.endpoint == "poll")
    ids = {h.body["session_id"] for h in server.of("handshake")}
    assert len(server.of("handshake")) == 3
    assert len(ids) == 1


def test_a_second_bot_in_the_same_directory_refuses_to_start(
    server: FakeServer, start_bot: StartBot
) -> None:
    """The swarming.lck lock makes the second bot exit with a clear error."""
    bot = start_bot()
    server.wait_for(lambda r: r.endpoint == "poll")
    second = subprocess.run(
        [sys.executable, str(bot.dir / "swarming_bot.zip"), "start_bot"],
        cwd=bot.dir,
        env=bot_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode == 3
    assert f"another bot (pid {bot.pid}) is already running" in second.stderr
    assert bot.proc.poll() is None


def test_sigterm_abandons_a_held_poll(server: FakeServer, start_bot: StartBot) -> None:
    """A poll the server holds open does not delay a SIGTERM shutdown."""

    def held(rec: Recorded) -> dict[str, Any]:
        time.sleep(30)
        return sleep()

    server.default_poll = held
    bot = start_bot()
    wait_until(lambda: server.of("handshake") != [])
    time.sleep(0.5)  # the first poll is now held
    started = time.monotonic()
    bot.signal(signal.SIGTERM)
    bot.wait(timeout=10, expect=0)
    assert time.monotonic() - started < 5
    assert server.wait_event("bot_shutdown", "Signal was received").body["event"] == "bot_shutdown"


def test_a_bot_from_the_source_tree_runs_tasks(server: FakeServer, tmp_path: pathlib.Path) -> None:
    """`python -m bot start_bot --server URL` handshakes with the source version and runs a task."""
    expected = archive.content_digest(archive.source_members(str(botzip.BOT_DIR)))
    server.run(manifest(T1, [sys.executable, "-c", "print('from source')"]))
    workdir = tmp_path / "src-bot"
    workdir.mkdir()
    env = bot_env({"PYTHONPATH": str(botzip.BOT_DIR.parent), "DROVER_BOT_CONFIG": "/nonexistent"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "start_bot", "--server", server.url],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert server.wait_final(T1).body["exit_code"] == 0
        assert server.output(T1) == b"from source\n"
        assert server.of("handshake")[0].body["version"] == expected
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_quickstart_base_hooks_fit_the_bot(server: FakeServer, start_bot: StartBot) -> None:
    """configs/bot_config.py, as the server bakes it in, loads and runs without errors."""
    hooks = botzip.BOT_DIR.parent / "configs" / "bot_config.py"
    if not hooks.exists():
        pytest.skip("no configs/bot_config.py in this checkout")
    server.run(manifest(T1, [sys.executable, "-c", "print('ok')"]))
    start_bot(bot_config=hooks.read_text())
    final = server.wait_final(T1)
    assert final.body["exit_code"] == 0
    poll = server.wait_for(lambda r: r.endpoint == "poll" and r.ts > final.ts)
    assert "quarantined" not in poll.body["state"]
    assert "authorization" not in poll.headers
    assert [e.body["message"] for e in server.of("event")] == []
