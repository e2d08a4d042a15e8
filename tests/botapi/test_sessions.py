"""Session problems on poll answer bot_restart and store nothing (PROTOCOL.md 0.2.4 S2)."""

from __future__ import annotations

import base64

import pytest

from server.clock import FakeClock
from tests.botapi.scripted import ScriptedBot
from tests.conftest import ServerFactory


async def _events(bot: ScriptedBot) -> list[str]:
    resp = await bot.client.get(f"/api/v1/bots/{bot.bot_id}/events")
    return [e["event_type"] for e in (await resp.json())["items"]]


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not base64 at all!",
        base64.b64encode(b"\x0a\x02hi").decode(),
    ],
)
async def test_bad_session_on_poll_answers_bot_restart(
    make_server: ServerFactory, token: str | None
) -> None:
    """A missing or garbage session gets bot_restart and the bot is not stored."""
    client = await make_server()
    bot = ScriptedBot(client, bot_id="ghost")
    await bot.expected_version()
    bot.session = token
    answer = await bot.poll()
    assert answer["cmd"] == "bot_restart"
    assert answer["message"]
    missing = await client.get("/api/v1/bots/ghost")
    assert missing.status == 404


async def test_forged_session_answers_bot_restart(make_server: ServerFactory) -> None:
    """A session whose MAC does not verify gets bot_restart and nothing changes."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    assert bot.session is not None
    raw = bytearray(base64.b64decode(bot.session))
    raw[-1] ^= 0x01
    bot.session = base64.b64encode(bytes(raw)).decode()
    before = await (await client.get("/api/v1/bots/bot1")).json()
    bot.state = {"running_time": 99, "sleep_streak": 0, "marker": "forged"}
    answer = await bot.poll()
    assert answer["cmd"] == "bot_restart"
    after = await (await client.get("/api/v1/bots/bot1")).json()
    assert after["state"] == before["state"]
    assert after["last_seen_ts"] == before["last_seen_ts"]


async def test_session_of_another_bot_answers_bot_restart(make_server: ServerFactory) -> None:
    """A valid session used by another bot ID is refused with bot_restart."""
    client = await make_server()
    alice = ScriptedBot(client, bot_id="alice")
    await alice.handshake()
    mallory = ScriptedBot(client, bot_id="mallory", version=alice.version)
    mallory.session = alice.session
    assert (await mallory.poll())["cmd"] == "bot_restart"
    assert (await client.get("/api/v1/bots/mallory")).status == 404


async def test_expired_session_answers_bot_restart(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """Once the session's lifetime has passed, the next poll gets bot_restart."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    assert (await bot.poll())["cmd"] == "sleep"
    clock.advance(3601)
    answer = await bot.poll()
    assert answer["cmd"] == "bot_restart"
    assert "expired" in answer["message"]
    await bot.handshake()
    assert (await bot.poll())["cmd"] == "sleep"


async def test_poll_refreshes_the_session(make_server: ServerFactory, clock: FakeClock) -> None:
    """A poll past half the session's life gets a later expiry, so an active bot never expires."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    for _ in range(3):
        clock.advance(3000)
        assert (await bot.poll())["cmd"] == "sleep"


async def test_poll_keeps_a_young_session(make_server: ServerFactory, clock: FakeClock) -> None:
    """Within the first half of its life the session comes back as sent; then a new one."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    first = bot.session
    clock.advance(1700)
    assert (await bot.poll())["cmd"] == "sleep"
    assert bot.session == first
    clock.advance(200)
    assert (await bot.poll())["cmd"] == "sleep"
    assert bot.session != first
    clock.advance(3000)
    assert (await bot.poll())["cmd"] == "sleep", "the new session expires an hour after it was made"


async def test_wrong_version_gets_update_even_without_session(make_server: ServerFactory) -> None:
    """The update order comes before any session check, so a broken bot can heal."""
    client = await make_server()
    bot = ScriptedBot(client)
    expected = await bot.expected_version()
    bot.version = "0" * 64
    answer = await bot.poll()
    assert answer == {"cmd": "update", "version": expected}
