"""Self-update end to end: new bot code is picked up; broken code is refused."""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Callable

import pytest

from tests.e2e.conftest import E2E_SETTINGS, BotProcess, DroverServer, wait_for

pytestmark = pytest.mark.e2e

PY = sys.executable


def _server_bot_version(drover: DroverServer) -> str:
    version: str = drover.call("GET", "/api/v1/server")["bot_version"]
    return version


def test_bot_updates_to_new_code_and_keeps_working(
    drover: DroverServer, start_bot: Callable[..., BotProcess]
) -> None:
    """When the served code changes, the bot updates, handshakes as the new version, runs tasks."""
    bot = start_bot("bot1")
    first = drover.create_task([PY, "-c", "print('v1')"])
    assert drover.wait(first)["state"] == "COMPLETED"
    old = _server_bot_version(drover)
    hooks = drover.config_dir / "bot_config.py"
    hooks.write_text(hooks.read_text() + "\n# a change that makes a new bot version\n")
    wait_for(lambda: _server_bot_version(drover) != old, 30, "the server to serve new code")
    new = _server_bot_version(drover)
    wait_for(lambda: drover.bot("bot1")["version"] == new, 60, "the bot to run the new code")
    assert bot.proc.poll() is None
    second = drover.create_task([PY, "-c", "print('v2')"])
    assert drover.wait(second)["state"] == "COMPLETED"
    assert b"v2" in drover.log(second)
    events = [e["event_type"] for e in drover.events("bot1")]
    assert events.count("bot_connected") >= 2


def test_broken_archive_does_not_take_the_bot_down(
    drover: DroverServer, start_bot: Callable[..., BotProcess]
) -> None:
    """An archive whose is_fine fails is refused and reported; the bot lives on and recovers."""
    bot = start_bot("bot1")
    wait_for(lambda: bool(drover.events("bot1")), 30, "the bot to connect")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("__main__.py", "import sys\nsys.exit(1)\n")
    (drover.config_dir / "broken.zip").write_bytes(buffer.getvalue())
    settings = drover.config_dir / "settings.cfg"
    settings.write_text(E2E_SETTINGS + 'bot_deployment { stable { archive_file: "broken.zip" } }\n')

    def reported() -> bool:
        return any(e["event_type"] == "bot_error" for e in drover.events("bot1"))

    wait_for(reported, 60, "a bot_error about the bad code")
    assert bot.proc.poll() is None
    settings.write_text(E2E_SETTINGS)
    task_id = drover.create_task([PY, "-c", "print('still here')"])
    assert drover.wait(task_id, timeout=120)["state"] == "COMPLETED"
    assert bot.proc.poll() is None
