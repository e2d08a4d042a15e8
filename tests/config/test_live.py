"""Live reload: valid edits are adopted, invalid ones refused while the old config serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import signal
from collections.abc import AsyncIterator

import pytest

from server.clock import FakeClock
from server.config.live import LiveConfig
from server.config.model import ConfigSnapshot
from server.config.validation import ConfigInvalid
from tests.config.conftest import WriteFile

# Generous: only reached when the behaviour under test is broken.
WAIT_SECS = 5.0
BAD_CIDR_BOTS_CFG = 'bot_group {\n  name: "x"\n  auth { ip_allowlist: "300.1.2.3/8" }\n}\n'


def add_dimension(config_dir: pathlib.Path, dimension: str) -> None:
    """Edits the quickstart bots.cfg to force one more dimension."""
    path = config_dir / "bots.cfg"
    path.write_text(
        path.read_text().replace('"pool:default"', f'"pool:default"\n  dimensions: "{dimension}"')
    )


def test_invalid_config_at_startup_raises(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """A server must not start on an invalid config: the constructor raises."""
    write("bots.cfg", BAD_CIDR_BOTS_CFG)
    with pytest.raises(ConfigInvalid, match=r"bots\.cfg:3: bot_group\[0\]\.auth\[0\]"):
        LiveConfig(quickstart_dir, clock=FakeClock())


def test_valid_edit_is_adopted_and_subscribers_told(quickstart_dir: pathlib.Path) -> None:
    """reload() adopts a valid edit as a new revision and hands it to every subscriber."""
    clock = FakeClock(100.0)
    config = LiveConfig(quickstart_dir, clock=clock)
    old = config.current
    seen: list[ConfigSnapshot] = []
    config.subscribe(seen.append)

    clock.advance(5)
    add_dimension(quickstart_dir, "foo:bar")
    assert config.reload() is True
    assert config.current.revision != old.revision
    assert config.current.groups[0].dimensions == {"foo": ["bar"], "pool": ["default"]}
    assert config.current.loaded_ts == 105.0
    assert seen == [config.current]
    assert config.error == ""
    assert config.reload() is False
    assert len(seen) == 1


def test_invalid_edit_is_refused_and_old_snapshot_serves(
    write: WriteFile, quickstart_dir: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An invalid edit keeps the old snapshot, logs at ERROR and names file, line and field."""
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    old = config.current
    seen: list[ConfigSnapshot] = []
    config.subscribe(seen.append)

    write("bots.cfg", BAD_CIDR_BOTS_CFG)
    with caplog.at_level(logging.ERROR, logger="server.config.live"):
        assert config.reload() is False
    assert config.current is old
    assert seen == []
    assert "bots.cfg:3: bot_group[0].auth[0].ip_allowlist[0]: '300.1.2.3/8'" in config.error
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "bots.cfg:3" in record.getMessage()
    assert old.revision[:12] in record.getMessage()


def test_fixing_the_edit_clears_the_error(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Once the files are valid again the error is cleared, even if they equal the serving set."""
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    original = (quickstart_dir / "bots.cfg").read_text()
    write("bots.cfg", BAD_CIDR_BOTS_CFG)
    assert config.reload() is False
    assert config.error

    write("bots.cfg", original)
    assert config.reload() is False
    assert config.error == ""


def test_check_once_reloads_only_on_change(quickstart_dir: pathlib.Path) -> None:
    """check_once() does nothing while the files are unchanged and adopts an edit once made."""
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    revision = config.current.revision
    assert config.check_once() is False
    add_dimension(quickstart_dir, "os:Linux")
    assert config.check_once() is True
    assert config.current.revision != revision
    assert config.check_once() is False


def test_check_once_sees_a_new_hooks_script(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """A group naming a missing script is refused, then adopted when the script appears."""
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    path = quickstart_dir / "bots.cfg"
    path.write_text(
        path.read_text().replace("bot_group {", 'bot_group {\n  bot_config_script: "h.py"')
    )
    assert config.check_once() is False
    assert "bots.cfg:" in config.error
    assert "bot_config_script" in config.error

    write("scripts/h.py", "def get_state(bot):\n    return None\n")
    assert config.check_once() is True
    assert config.error == ""
    assert config.current.groups[0].bot_config_script_body.startswith("def get_state")


def test_check_once_sees_a_replaced_archive(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Replacing a pinned bot archive on disk is picked up like a config edit."""
    write("bot.zip", "PK-1")
    write("settings.cfg", 'bot_deployment { stable { archive_file: "bot.zip" } }\n')
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    config.check_once()  # the first look also stats the archives named by settings.cfg
    revision = config.current.revision
    assert config.check_once() is False

    write("bot.zip", "PK-22")
    assert config.check_once() is True
    assert config.current.revision != revision


def test_failing_subscriber_does_not_block_others(quickstart_dir: pathlib.Path) -> None:
    """A subscriber that raises is logged; later subscribers still get the new snapshot."""
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    seen: list[str] = []

    def broken(snapshot: ConfigSnapshot) -> None:
        raise RuntimeError("boom")

    config.subscribe(broken)
    config.subscribe(lambda snapshot: seen.append(snapshot.revision))
    add_dimension(quickstart_dir, "a:b")
    assert config.reload() is True
    assert seen == [config.current.revision]


@contextlib.asynccontextmanager
async def adopted(config: LiveConfig) -> AsyncIterator[asyncio.Event]:
    """An event set when the config adopts a new revision."""
    event = asyncio.Event()
    config.subscribe(lambda snapshot: event.set())
    yield event


async def test_watch_adopts_an_edit(quickstart_dir: pathlib.Path) -> None:
    """The background watcher notices an edited file and adopts it."""
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    revision = config.current.revision
    async with adopted(config) as event:
        watcher = asyncio.create_task(config.watch(0.01))
        try:
            add_dimension(quickstart_dir, "watch:ed")
            await asyncio.wait_for(event.wait(), WAIT_SECS)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    assert config.current.revision != revision
    assert config.current.groups[0].dimensions["watch"] == ["ed"]


async def test_sighup_reloads(quickstart_dir: pathlib.Path) -> None:
    """SIGHUP, with the handler installed on the running loop, reloads the config."""
    config = LiveConfig(quickstart_dir, clock=FakeClock())
    revision = config.current.revision
    loop = asyncio.get_running_loop()
    async with adopted(config) as event:
        config.install_sighup(loop)
        try:
            add_dimension(quickstart_dir, "sig:hup")
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.wait_for(event.wait(), WAIT_SECS)
        finally:
            config.remove_sighup(loop)
    assert config.current.revision != revision
    assert config.current.groups[0].dimensions["sig"] == ["hup"]
