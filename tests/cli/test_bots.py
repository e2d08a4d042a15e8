"""`drover bots`, `bot` and the bot admin controls against a real server and a real bot."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.cli.conftest import Cli
from tests.e2e.conftest import BotProcess, DroverServer, wait_for


@pytest.mark.e2e
def test_bots_lists_a_connected_bot_and_filters(
    cli: Cli, start_bot: Callable[..., BotProcess]
) -> None:
    """A live idle bot is in the table and in the matching filters, not in the others."""
    start_bot("bot1")
    lines = cli("bots").stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATUS", "TASK", "POOL"]
    assert lines[1].split()[:3] == ["bot1", "idle", "default"]

    def ids(*options: str) -> list[str]:
        return [b["bot_id"] for b in json.loads(cli("bots", "--json", *options).stdout)["items"]]

    assert ids("-d", "pool=default", "--alive", "--idle") == ["bot1"]
    assert ids("--dead") == []
    assert ids("--busy") == []
    assert ids("-d", "pool=elsewhere") == []


@pytest.mark.e2e
def test_bot_shows_details_and_events(cli: Cli, start_bot: Callable[..., BotProcess]) -> None:
    """`bot --events` shows the bot's status, dimensions and its connection event."""
    start_bot("bot1")
    run = cli("bot", "bot1", "--events")
    assert run.returncode == 0, run.stderr
    assert "status:     idle" in run.stdout
    assert "  pool: default" in run.stdout
    assert "bot_connected" in run.stdout
    as_json = json.loads(cli("bot", "--json", "--events", "bot1").stdout)
    assert as_json["bot"]["bot_id"] == "bot1"
    assert as_json["events"]["items"]


@pytest.mark.e2e
def test_admin_controls_change_the_bot(
    drover: DroverServer, cli: Cli, start_bot: Callable[..., BotProcess]
) -> None:
    """quarantine, unquarantine, maintenance and terminate each show in the API's view;
    they need an admin token."""
    start_bot("bot1")
    refused = cli("quarantine", "bot1")
    assert refused.returncode == 1
    assert "Bots.QuarantineBot needs the admin role" in refused.stderr
    made = cli(
        "token", "create", "--state-dir", str(drover.state_dir), "--name", "op", "--role", "admin"
    )
    admin = ("--token", made.stdout.strip())
    run = cli("quarantine", "bot1", "--message", "flaky disk", *admin)
    assert run.stdout == "bot1: quarantined (flaky disk)\n"
    assert drover.bot("bot1")["quarantine_message"] == "flaky disk"
    assert cli("unquarantine", "bot1", *admin).stdout == "bot1: idle\n"
    assert drover.bot("bot1")["quarantined"] is False
    run = cli("maintenance", "bot1", "new disk", *admin)
    assert run.stdout == "bot1: maintenance (new disk)\n"
    assert drover.bot("bot1")["maintenance_msg"] == "new disk"
    cli("maintenance", "bot1", "", *admin)
    assert drover.bot("bot1")["maintenance_msg"] == ""
    run = cli("terminate", "bot1", *admin)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("bot1: asked to exit; termination task ")
    termination = run.stdout.split()[-1]
    wait_for(lambda: drover.result(termination)["state"] == "COMPLETED", 30, "the bot to exit")


def test_unknown_bot_exits_1_with_the_servers_message(cli: Cli) -> None:
    """Asking for a bot the server has never seen fails with the API's message."""
    run = cli("bot", "ghost")
    assert run.returncode == 1
    assert run.stderr == "drover: No such bot: ghost\n"
