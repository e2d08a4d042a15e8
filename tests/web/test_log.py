"""Following a task's log from its page: the stream the page's script reads, and the assets."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import ClientResponse

from tests.web.conftest import Browser


async def message(resp: ClientResponse, sse: bool = False) -> dict[str, Any]:
    """The next message of an NDJSON or server-sent events stream (within 10 s)."""
    line = await asyncio.wait_for(resp.content.readline(), 10)
    if sse:
        assert line.startswith(b"data: ")
        assert await resp.content.readline() == b"\n"
        line = line.removeprefix(b"data: ")
    decoded: dict[str, Any] = json.loads(line)
    return decoded


def output(msg: dict[str, Any]) -> bytes:
    """The output bytes a stream message carries."""
    return base64.b64decode(msg.get("output", ""))


async def test_the_stream_follows_a_running_task_from_the_pages_offset(browser: Browser) -> None:
    """From the offset the page stopped at, the stream yields new output as the bot sends it
    and ends with the task's final state."""
    bot = await browser.bot("bot1")
    task_id = await browser.create_task()
    run_id = await browser.run(bot, b"first\n")
    page = await browser.get(f"/ui/tasks/{task_id}")
    log = page.ids["log"]
    resp = await browser.client.get(f"{log.attrs['data-stream']}?offset={log.attrs['data-offset']}")
    assert resp.status == 200
    assert resp.content_type == "application/x-ndjson"
    first = await message(resp)
    assert (first["state"], output(first)) == ("RUNNING", b"")
    await bot.update(run_id, b"second\n", 6)
    more = await message(resp)
    assert output(more) == b"second\n"
    assert more["offset"] == "6"
    await bot.update(run_id, exit_code=0, duration=1.0)
    last = await message(resp)
    while last["state"] == "RUNNING":
        last = await message(resp)
    assert last["state"] == "COMPLETED"
    assert await asyncio.wait_for(resp.content.read(), 10) == b""


async def test_the_stream_speaks_server_sent_events_when_asked(browser: Browser) -> None:
    """With Accept: text/event-stream the same messages come as server-sent events."""
    bot = await browser.bot("bot1")
    task_id = await browser.create_task()
    run_id = await browser.run(bot, b"hello\n")
    await bot.update(run_id, exit_code=0, duration=1.0)
    resp = await browser.client.get(
        f"/ui/tasks/{task_id}/stdout:stream", headers={"Accept": "text/event-stream"}
    )
    assert resp.content_type == "text/event-stream"
    first = await message(resp, sse=True)
    assert output(first) == b"hello\n"
    assert first["state"] == "COMPLETED"


async def test_a_bad_stream_request_is_a_json_error(browser: Browser) -> None:
    """The stream answers errors as the client API does, for the page's script to show."""
    resp = await browser.client.get("/ui/tasks/5f0000000000000/stdout:stream")
    assert resp.status == 404
    assert "No such task" in (await resp.json())["error"]["message"]
    task_id = await browser.create_task()
    resp = await browser.client.get(f"/ui/tasks/{task_id}/stdout:stream?offset=x")
    assert resp.status == 400


async def test_pages_come_with_their_stylesheet_script_and_safety_headers(
    browser: Browser,
) -> None:
    """Pages link the local stylesheet, forbid other origins' scripts and styles, are not
    cached, and the assets are served by the server itself."""
    resp = await browser.client.get("/")
    assert resp.status == 200
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await browser.get("/")
    assert not [link for link in page.links if link.startswith(("http:", "https:", "//"))]
    assert "/ui/static/drover.css" in page.source
    css = await browser.client.get("/ui/static/drover.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    script = await browser.client.get("/ui/static/log.js")
    assert script.status == 200
    for path in ("/ui", "/ui/"):
        resp = await browser.client.get(path, allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (302, "/")
