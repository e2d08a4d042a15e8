"""Listing, counting and summarizing tasks, and batch cancel by tag selector."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.clock import FakeClock
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory


async def _get(client: TestClient, path: str) -> Any:  # type: ignore[type-arg]
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _make(client: TestClient, clock: FakeClock, tags: list[str]) -> str:  # type: ignore[type-arg]
    clock.advance(1)
    resp = await client.post("/api/v1/tasks", json=task_body(tags=tags, wait=True))
    task_id: str = (await resp.json())["task_id"]
    return task_id


async def test_list_filters_pages_and_orders_newest_first(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """Tasks list newest first, filtered by state, tags, pool and time, in pages with a cursor."""
    client = await make_server()
    start = clock.now()
    ids = [await _make(client, clock, ["rev:1" if i < 3 else "rev:2"]) for i in range(5)]
    listing = await _get(client, "/api/v1/tasks?limit=2")
    assert [t["task_id"] for t in listing["items"]] == [ids[4], ids[3]]
    rest = await _get(client, f"/api/v1/tasks?limit=10&cursor={listing['cursor']}")
    assert [t["task_id"] for t in rest["items"]] == [ids[2], ids[1], ids[0]]
    assert rest["cursor"] == ""
    tagged = await _get(client, "/api/v1/tasks?tags=rev:1&pool=default")
    assert [t["task_id"] for t in tagged["items"]] == [ids[2], ids[1], ids[0]]
    await client.post(f"/api/v1/tasks/{ids[0]}:cancel", json={})
    canceled = await _get(client, "/api/v1/tasks?state=CANCELED")
    assert [t["task_id"] for t in canceled["items"]] == [ids[0]]
    window = await _get(client, f"/api/v1/tasks?start={start + 2}&end={start + 4}")
    assert [t["task_id"] for t in window["items"]] == [ids[2], ids[1]]
    count = await _get(client, "/api/v1/tasks:count?state=PENDING")
    assert count["count"] == "4"
    bad = await client.get("/api/v1/tasks?state=DONE")
    assert bad.status == 400
    assert "state" in (await bad.json())["error"]["message"]


async def test_summary_says_whether_all_are_done_and_succeeded(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """The summary of a tag selector counts states and says is-done and all-succeeded."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    await _make(client, clock, ["rev:9"])
    await _make(client, clock, ["rev:9"])
    summary = await _get(client, "/api/v1/tasks:summary?tags=rev:9")
    assert summary["total"] == "2"
    assert summary["all_done"] is False
    for exit_code in (0, 0):
        run_id = (await bot.poll())["manifest"]["task_id"]
        await bot.update(run_id, exit_code=exit_code, duration=1.0)
    summary = await _get(client, "/api/v1/tasks:summary?tags=rev:9")
    assert summary["all_done"] is True
    assert summary["all_succeeded"] is True
    assert summary["states"] == [{"state": "COMPLETED", "count": "2"}]
    await _make(client, clock, ["rev:9"])
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, exit_code=1, duration=1.0)
    summary = await _get(client, "/api/v1/tasks:summary?tags=rev:9")
    assert (summary["total"], summary["all_done"], summary["all_succeeded"]) == ("3", True, False)
    empty = await _get(client, "/api/v1/tasks:summary?tags=rev:none")
    assert (empty.get("total", "0"), empty["all_done"], empty["all_succeeded"]) == ("0", True, True)


async def test_batch_cancel_dry_run_lists_exactly_what_is_then_cancelled(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    """A dry run lists the tasks a batch cancel would change; the real run changes exactly those."""
    client = await make_server()
    bot = ScriptedBot(client)
    await bot.handshake()
    running = await _make(client, clock, ["rev:5"])
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id, b"x", 0)
    pending = [await _make(client, clock, ["rev:5"]) for _ in range(2)]
    other = await _make(client, clock, ["rev:6"])
    body = {"tags": ["rev:5"], "kill_running": True, "dry_run": True}
    dry = await (await client.post("/api/v1/tasks:cancel", json=body)).json()
    assert dry["dry_run"] is True
    assert sorted(dry["task_ids"]) == sorted([running, *pending])
    states = {t: (await _get(client, f"/api/v1/tasks/{t}"))["state"] for t in dry["task_ids"]}
    assert states[running] == "RUNNING"
    real = await (await client.post("/api/v1/tasks:cancel", json={**body, "dry_run": False})).json()
    assert sorted(real["task_ids"]) == sorted(dry["task_ids"])
    assert (await _get(client, f"/api/v1/tasks/{other}"))["state"] == "PENDING"
    for task_id in pending:
        assert (await _get(client, f"/api/v1/tasks/{task_id}"))["state"] == "CANCELED"
    assert (await bot.update(run_id, b"y", 1))["must_stop"] is True
    no_tags = await client.post("/api/v1/tasks:cancel", json={"dry_run": True})
    assert no_tags.status == 400
