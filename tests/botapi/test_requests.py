"""Bad input answers 4xx with a message naming the field, and stores nothing."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from server.botcode import digest_of_zip
from tests.botapi.scripted import BOT_API, ScriptedBot, task_body
from tests.conftest import ServerFactory


async def test_server_ping_answers_plain_text(make_server: ServerFactory) -> None:
    """server_ping always answers 200 "Server up"."""
    client = await make_server()
    resp = await client.get(f"{BOT_API}/server_ping")
    assert resp.status == 200
    assert await resp.text() == "Server up"


async def test_unknown_api_path_answers_json_404(make_server: ServerFactory) -> None:
    """Unknown paths under the API prefixes answer a JSON 404 a stock bot does not retry."""
    client = await make_server()
    for path in (f"{BOT_API}/nope", "/api/v1/nope", "/api/v1/tasks/abc/nope"):
        resp = await client.post(path, json={})
        assert resp.status == 404, path
        assert resp.content_type == "application/json"
        assert "error" in await resp.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
    ],
)
async def test_malformed_body_answers_400(
    make_server: ServerFactory, body: bytes, field: str
) -> None:
    """A body that is not a JSON object is a 400 saying so."""
    client = await make_server()
    resp = await client.post(
        f"{BOT_API}/handshake", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert field in (await resp.json())["error"]


async def test_handshake_without_bot_id_is_400_and_stores_nothing(
    make_server: ServerFactory,
) -> None:
    """dimensions.id is required; the error names it."""
    client = await make_server()
    resp = await client.post(f"{BOT_API}/handshake", json={"dimensions": {"os": ["Linux"]}})
    assert resp.status == 400
    assert "dimensions.id" in (await resp.json())["error"]
    listing = await (await client.get("/api/v1/bots")).json()
    assert listing["items"] == []


async def test_bad_session_id_is_400(make_server: ServerFactory) -> None:
    """A session_id outside the allowed syntax is refused, naming the field."""
    client = await make_server()
    resp = await client.post(
        f"{BOT_API}/handshake",
        json={"dimensions": {"id": ["bot1"]}, "session_id": "UPPER CASE!"},
    )
    assert resp.status == 400
    assert "session_id" in (await resp.json())["error"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"dimensions": {"id": ["bot1\n"]}}, "dimensions.id"),
        ({"dimensions": {"id": ["bot1"]}, "session_id": "abc/1\n"}, "session_id"),
    ],
)
async def test_a_trailing_newline_is_not_part_of_an_id(
    make_server: ServerFactory, fields: dict[str, Any], named: str
) -> None:
    """IDs must match their syntax whole: "bot1\\n" is no bot ID, and no bot is stored."""
    client = await make_server()
    resp = await client.post(f"{BOT_API}/handshake", json=fields)
    assert resp.status == 400
    assert named in (await resp.json())["error"]
    assert (await (await client.get("/api/v1/bots")).json())["items"] == []


async def test_a_run_id_with_a_trailing_newline_is_400(make_server: ServerFactory) -> None:
    """task_update names the run by its exact ID; one with a newline after it is refused."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    run_id = (await bot.poll())["manifest"]["task_id"]
    resp = await client.post(
        f"{BOT_API}/task_update",
        json={
            "id": "bot1",
            "task_id": run_id + "\n",
            "session": bot.session,
            "exit_code": 0,
            "duration": 1.0,
        },
    )
    assert resp.status == 400
    assert "task_id" in (await resp.json())["error"]
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "RUNNING"


async def test_bad_task_update_fields_are_400_and_write_nothing(
    make_server: ServerFactory,
) -> None:
    """Wrongly typed update fields are refused with the field's name; no output is written."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    run_id = (await bot.poll())["manifest"]["task_id"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"output": "!!!", "output_chunk_start": 0}, "output"),
        ({"output": "aGk=", "output_chunk_start": -1}, "output_chunk_start"),
        ({"exit_code": "0", "duration": 1}, "exit_code"),
        ({"exit_code": 0}, "duration"),
        ({"cost_usd": -1}, "cost_usd"),
        ({"hard_timeout": "yes"}, "hard_timeout"),
    ]
    for fields, name in cases:
        resp = await client.post(
            f"{BOT_API}/task_update/{run_id}",
            json={"id": "bot1", "task_id": run_id, "session": bot.session, **fields},
        )
        assert resp.status == 400, fields
        assert name in (await resp.json())["error"], fields
    result = await (await client.get(f"/api/v1/tasks/{run_id}")).json()
    assert result["state"] == "RUNNING"
    assert result["output_size"] == "0"


async def test_unknown_event_type_is_400(make_server: ServerFactory) -> None:
    """Only the bot's own event types are accepted."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    resp = await client.post(
        f"{BOT_API}/event", json={"event": "task_completed", "session": bot.session}
    )
    assert resp.status == 400
    assert "event" in (await resp.json())["error"]


async def test_event_is_recorded_and_its_state_quarantines(make_server: ServerFactory) -> None:
    """A bot_error event is stored, and a quarantined state in it marks the bot."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    answer = await bot.call(
        "event",
        {
            "event": "bot_error",
            "message": "disk is gone",
            "session": bot.session,
            "dimensions": bot.dimensions,
            "state": {"running_time": 1, "sleep_streak": 0, "quarantined": "no disk"},
            "version": bot.version,
        },
    )
    assert answer == {}
    info = await (await client.get("/api/v1/bots/bot1")).json()
    assert info["quarantined"] is True
    assert info["quarantine_message"] == "no disk"
    events = await (await client.get("/api/v1/bots/bot1/events")).json()
    assert [e["event_type"] for e in events["items"]][:2] == ["bot_error", "bot_connected"]
    assert events["items"][0]["message"] == "disk is gone"


async def test_quarantined_bot_gets_no_task(make_server: ServerFactory) -> None:
    """A bot reporting itself quarantined or in maintenance sleeps while a task it could run
    waits, and both its answer and the API say why."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    await client.post("/api/v1/tasks", json=task_body())
    bot.state = {"running_time": 1, "sleep_streak": 0, "quarantined": "broken"}
    answer = await bot.poll()
    assert answer["cmd"] == "sleep"
    assert answer["quarantined"] is True
    assert answer["message"] == "quarantined: broken"
    info = await (await client.get("/api/v1/bots/bot1")).json()
    assert info["quarantine_message"] == "broken"
    bot.state = {"running_time": 1, "sleep_streak": 0, "maintenance": "upgrading"}
    answer = await bot.poll()
    assert (answer["cmd"], answer["message"]) == ("sleep", "in maintenance: upgrading")
    info = await (await client.get("/api/v1/bots/bot1")).json()
    assert info["maintenance_msg"] == "upgrading"
    bot.state = {"running_time": 1, "sleep_streak": 0}
    answer = await bot.poll()
    assert answer["cmd"] == "run"
    assert "message" not in answer


async def test_bot_code_serves_the_advertised_digest(make_server: ServerFactory) -> None:
    """The archive at bot_code/<digest> has exactly that digest; /bot_code redirects to it."""
    client = await make_server()
    digest = await ScriptedBot(client).expected_version()
    resp = await client.get(f"{BOT_API}/bot_code/{digest}")
    assert resp.status == 200
    assert resp.content_type == "application/octet-stream"
    data = await resp.read()
    assert digest_of_zip(data) == digest
    redirect = await client.get("/bot_code", allow_redirects=False)
    assert redirect.status == 302
    assert redirect.headers["Location"] == f"{BOT_API}/bot_code/{digest}"
    unknown = await client.get(f"{BOT_API}/bot_code/{'0' * 64}", allow_redirects=False)
    assert unknown.status == 302


async def test_unknown_bot_is_refused_and_not_stored(
    make_server: ServerFactory, config_dir: pathlib.Path
) -> None:
    """A bot no group admits is refused at handshake and poll, and nothing is stored."""
    (config_dir / "bots.cfg").write_text(
        'trusted_dimensions: "pool"\n'
        "bot_group {\n"
        '  name: "lab"\n'
        '  bot_id: "lab1"\n'
        '  auth { ip_allowlist: "127.0.0.0/8" }\n'
        '  dimensions: "pool:default"\n'
        "}\n"
        "bot_group {\n"
        '  name: "remote"\n'
        '  bot_id_prefix: "far"\n'
        '  auth { ip_allowlist: "10.9.0.0/16" }\n'
        '  dimensions: "pool:default"\n'
        "}\n"
    )
    client = await make_server()
    stranger = ScriptedBot(client, bot_id="stranger")
    answer = await stranger.handshake(status=403)
    assert "stranger" in answer["error"]
    far = ScriptedBot(client, bot_id="far1", version=stranger.version)
    refused = await far.handshake(status=403)
    assert refused["error"]
    assert (await far.poll(status=403))["error"]
    listing = await (await client.get("/api/v1/bots")).json()
    assert listing["items"] == []
    lab = ScriptedBot(client, bot_id="lab1", version=stranger.version)
    await lab.handshake()
    assert (await lab.poll())["cmd"] == "sleep"
