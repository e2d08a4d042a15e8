"""bots.cfg edits reach bots live: new dimensions, bot_restart, refused invalid edits."""

from __future__ import annotations

import pathlib

from server.appkeys import CONFIG
from tests.botapi.scripted import ScriptedBot
from tests.conftest import ServerFactory, app_of


async def test_group_dimension_edit_restarts_bots_and_reaches_polls(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """Editing a group's dimensions answers bot_restart, then polls carry the new dimension."""
    client = await make_server()
    config = app_of(client)[CONFIG]
    bot = ScriptedBot(client)
    await bot.handshake()
    assert (await bot.poll())["cmd"] == "sleep"
    old_revision = config.current.revision

    bots_cfg = config_dir / "bots.cfg"
    bots_cfg.write_text(
        bots_cfg.read_text().replace('"pool:default"', '"pool:default"\n  dimensions: "foo:bar"')
    )
    assert config.reload() is True
    assert config.current.revision != old_revision

    answer = await bot.poll()
    assert answer["cmd"] == "bot_restart"
    assert answer["message"] == "pick up new bots.cfg config"
    hello = await bot.handshake()
    assert hello["bot_group_cfg"]["dimensions"] == {"foo": ["bar"], "pool": ["default"]}
    assert (await bot.poll())["cmd"] == "sleep"
    info = await (await client.get("/api/v1/bots/bot1")).json()
    dims = {d["key"]: d["value"] for d in info["dimensions"]}
    assert dims["foo"] == ["bar"]


async def test_invalid_edit_is_refused_and_old_config_keeps_serving(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A broken bots.cfg is refused with file and line; bots keep working on the old config."""
    client = await make_server()
    config = app_of(client)[CONFIG]
    bot = ScriptedBot(client)
    await bot.handshake()
    revision = config.current.revision

    (config_dir / "bots.cfg").write_text(
        'bot_group {\n  name: "x"\n  auth { ip_allowlist: "300.1.2.3/8" }\n}\n'
    )
    assert config.reload() is False
    assert config.current.revision == revision
    details = await (await client.get("/api/v1/server")).json()
    assert details["config_revision"] == revision
    assert "bots.cfg:3" in details["config_error"]
    assert (await bot.poll())["cmd"] == "sleep"
