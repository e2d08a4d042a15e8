"""/bootstrap, the access check of /bot_code, and `drover bootstrap-token`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import cli
from server.appkeys import CONFIG, STORE
from server.auth import bootstrap_tokens, minting
from server.botapi import bootstrap
from server.clock import FakeClock
from tests.conftest import ServerFactory, app_of

BOT_TOKEN = "bot-secret-token"
# Bots must present a token: the test client's loopback address alone admits nobody.
TOKEN_ONLY_BOTS_CFG = f"""
trusted_dimensions: "pool"
bot_group {{
  name: "default"
  auth {{ bot_token_sha256: "{hashlib.sha256(BOT_TOKEN.encode()).hexdigest()}" }}
  dimensions: "pool:default"
}}
"""

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def closed(make_server: ServerFactory, config_dir: pathlib.Path) -> Client:
    """A server whose bots.cfg admits no one by address."""
    (config_dir / "bots.cfg").write_text(TOKEN_ONLY_BOTS_CFG)
    return await make_server()


async def mint(client: Client, clock: FakeClock, lifetime: float = 600) -> str:
    """A bootstrap token minted in the server's store, as `drover bootstrap-token` does."""
    token, _ = await minting.bootstrap_minter(app_of(client)[STORE], clock).mint(lifetime)
    return token


async def test_bot_code_needs_a_token_or_credentials(closed: Client, clock: FakeClock) -> None:
    """Without a bootstrap token or bot credentials /bot_code is a 403; with either, a redirect."""
    refused = await closed.get("/bot_code", allow_redirects=False)
    assert refused.status == 403
    assert "bootstrap token" in (await refused.json())["error"]["message"]
    token = await mint(closed, clock)
    ok = await closed.get(f"/bot_code?tok={token}", allow_redirects=False)
    assert ok.status == 302
    assert ok.headers["Location"].startswith("/swarming/api/v1/bot/bot_code/")
    archive = await closed.get(ok.headers["Location"])
    assert archive.content_type == "application/octet-stream"
    by_bot = await closed.get(
        "/bot_code?bot_id=b1",
        headers={"Authorization": f"Bearer {BOT_TOKEN}"},
        allow_redirects=False,
    )
    assert by_bot.status == 302
    wrong = await closed.get(
        "/bot_code", headers={"Authorization": "Bearer nope"}, allow_redirects=False
    )
    assert wrong.status == 403
    clock.advance(600)
    expired = await closed.get(f"/bot_code?tok={token}", allow_redirects=False)
    assert expired.status == 403
    assert "expired" in (await expired.json())["error"]["message"]
    forged = await closed.get(f"/bot_code?tok={token[:-2]}xx", allow_redirects=False)
    assert forged.status == 403


async def test_bootstrap_script_carries_the_token(closed: Client, clock: FakeClock) -> None:
    """/bootstrap?tok= answers an uncacheable Python script that downloads /bot_code with it."""
    token = await mint(closed, clock)
    resp = await closed.get(f"/bootstrap?tok={token}")
    assert resp.status == 200
    assert resp.content_type == "text/x-python"
    assert resp.headers["Cache-Control"] == "no-store"
    script = await resp.text()
    compile(script, "bootstrap.py", "exec")
    assert f"TOKEN = {token!r}" in script
    assert "SERVER = 'http://127.0.0.1:1'" in script
    assert (await closed.get("/bootstrap")).status == 403
    assert (await closed.get("/bootstrap?tok=drb_junk")).status == 403


async def test_admitted_callers_get_a_script_with_a_fresh_token(
    make_server: ServerFactory, config_dir: pathlib.Path, clock: FakeClock
) -> None:
    """A caller bots.cfg admits by address gets a script whose new token opens /bot_code,
    for a short while."""
    client = await make_server()
    script = await (await client.get("/bootstrap")).text()
    token = script.split("TOKEN = '", 1)[1].split("'", 1)[0]
    assert token.startswith(bootstrap_tokens.PREFIX)
    (config_dir / "bots.cfg").write_text(TOKEN_ONLY_BOTS_CFG)
    assert app_of(client)[CONFIG].reload()
    ok = await client.get(f"/bot_code?tok={token}", allow_redirects=False)
    assert ok.status == 302
    clock.advance(bootstrap.ON_THE_FLY_SECS)
    assert (await client.get(f"/bot_code?tok={token}", allow_redirects=False)).status == 403


async def test_cli_mints_a_token_the_running_server_accepts(
    closed: Client,
    clock: FakeClock,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`drover bootstrap-token --state-dir` works offline on the server's state directory."""
    clock.set(time.time())
    args = [
        "--server",
        "https://drover.example.com",
        "--json",
        "bootstrap-token",
        "--state-dir",
        str(tmp_path / "state"),
        "--lifetime",
        "300",
    ]
    assert await asyncio.to_thread(cli.main, args) == 0
    printed = json.loads(capsys.readouterr().out)
    token = printed["token"]
    assert printed["command"] == (
        f"curl -fsS 'https://drover.example.com/bootstrap?tok={token}' | python3 - drover-bot"
    )
    clock.advance(1)
    ok = await closed.get(f"/bot_code?tok={token}", allow_redirects=False)
    assert ok.status == 302


def test_cli_refuses_a_directory_without_state(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pointing the command at a directory that is not a server's state fails with a message."""
    assert cli.main(["bootstrap-token", "--state-dir", str(tmp_path)]) == 1
    assert "state directory" in capsys.readouterr().err
