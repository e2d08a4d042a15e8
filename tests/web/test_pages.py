"""The web UI's pages over a real server: what each shows, its filters and its paging."""

from __future__ import annotations

import pathlib

from server.appkeys import CONFIG
from tests.conftest import app_of
from tests.web.conftest import Browser
from tests.web.html import Page

UNIT = {"name": "test_a", "result": "fail", "namespace": "suite", "details": "assert 1 == 2"}
LINT = {"name": "unused import", "code": "F401", "severity": "warning", "path": "a.py", "line": 3}


def linked(page: Page, prefix: str) -> list[str]:
    """The IDs a page links to under `prefix` ("/ui/bots/" or "/ui/tasks/"), in order."""
    found = [link.removeprefix(prefix) for link in page.links if link.startswith(prefix)]
    return list(dict.fromkeys(found))


async def assert_error_pages(browser: Browser, status: int, expected: dict[str, str]) -> None:
    """Each path answers an HTML page of `status` whose text holds its message."""
    for path, message in expected.items():
        page = await browser.get(path, status=status)
        assert message in page.text, path


async def walk(browser: Browser, start: str, prefix: str) -> tuple[list[str], Page]:
    """The IDs linked under `prefix` on `start` and the pages after it, following "Next",
    and the last page. Each next page must keep the parameters of the first."""
    wanted = set(start.partition("?")[2].split("&"))
    seen: list[str] = []
    path = start
    for _ in range(10):
        page = await browser.get(path)
        seen += linked(page, prefix)
        following = [link for link in page.links if "cursor=" in link]
        nexts = [link for link in following if link != path]
        if not nexts:
            return seen, page
        [path] = nexts
        assert wanted <= set(path.partition("?")[2].split("&")), path
    raise AssertionError(f"more than 10 pages from {start}")


async def test_overview_counts_tasks_and_bots_and_shows_the_config(browser: Browser) -> None:
    """The overview counts tasks per state and bots per state and names the config revision."""
    idle = await browser.bot("idle")
    busy = await browser.bot("busy")
    await browser.create_task(name="runs")
    await browser.run(busy)
    await browser.create_task(dims={"os": "Mac"})
    await browser.create_task(dims={"os": "Mac"})
    assert idle.session
    page = await browser.get("/")
    assert page.ids["tasks-PENDING"].text.strip() == "2"
    assert page.ids["tasks-RUNNING"].text.strip() == "1"
    assert page.ids["tasks-COMPLETED"].text.strip() == "0"
    assert page.ids["bots-idle"].text.strip() == "1"
    assert page.ids["bots-busy"].text.strip() == "1"
    assert page.ids["bots-alive"].text.strip() == "2"
    revision = app_of(browser.client)[CONFIG].current.revision
    assert revision[:12] in page.ids["config-revision"].text
    assert "The files on disk are the revision in use." in page.text
    assert "config-error" not in page.ids


async def test_overview_shows_the_last_refused_config_edit(
    browser: Browser, config_dir: pathlib.Path
) -> None:
    """A refused config edit is shown with its message, on every page's banner too."""
    config = app_of(browser.client)[CONFIG]
    before = config.current.revision
    (config_dir / "settings.cfg").write_text("bot_death_timeout_secs: 1\n")
    config.reload()
    assert config.error
    assert config.current.revision == before
    page = await browser.get("/")
    assert "bot_death_timeout_secs" in page.ids["config-error"].text
    assert before[:12] in page.ids["config-revision"].text
    assert "The latest config edit was refused" in (await browser.get("/ui/tasks")).text


async def test_bots_are_listed_with_state_and_filtered(browser: Browser) -> None:
    """The bot list shows each bot's state and current task; dimension and state filters
    narrow it."""
    dead = await browser.bot("dead")
    browser.clock.advance(601)
    await browser.bot("linux")
    await browser.bot("mac", os=["Mac"])
    busy = await browser.bot("busy")
    await browser.create_task(name="long")
    run_id = await browser.run(busy)
    quarantined = await browser.bot("quarantined")
    resp = await browser.client.post(
        "/api/v1/bots/quarantined:quarantine", json={"message": "flaky disk"}
    )
    assert resp.status == 200
    assert dead.session
    assert quarantined.session
    page = await browser.get("/ui/bots")
    assert linked(page, "/ui/bots/") == ["busy", "dead", "linux", "mac", "quarantined"]
    assert run_id in linked(page, "/ui/tasks/")
    assert "flaky disk" in page.text
    for state, expected in [
        ("alive", ["busy", "linux", "mac", "quarantined"]),
        ("dead", ["dead"]),
        ("busy", ["busy"]),
        ("idle", ["linux", "mac"]),
        ("quarantined", ["quarantined"]),
    ]:
        page = await browser.get(f"/ui/bots?state={state}")
        assert linked(page, "/ui/bots/") == expected, state
    page = await browser.get("/ui/bots?dimensions=os:Mac")
    assert linked(page, "/ui/bots/") == ["mac"]
    page = await browser.get("/ui/bots?dimensions=os:Linux+id:linux&state=alive")
    assert linked(page, "/ui/bots/") == ["linux"]
    assert page.form("/ui/bots").fields == {"dimensions": "os:Linux id:linux", "state": ""}


async def test_bot_list_pages_with_cursors_keeping_the_filter(browser: Browser) -> None:
    """Pages follow each other by cursor, with the filter kept, none twice, none left out."""
    for n in range(5):
        await browser.bot(f"bot{n}")
    await browser.bot("mac", os=["Mac"])
    seen, _ = await walk(browser, "/ui/bots?dimensions=os:Linux&limit=2", "/ui/bots/")
    assert seen == [f"bot{n}" for n in range(5)]


async def test_bad_filters_are_400_pages_naming_the_parameter(browser: Browser) -> None:
    """A malformed filter is refused with a page saying which parameter is wrong."""
    await assert_error_pages(
        browser,
        400,
        {
            "/ui/bots?state=sleepy": "'sleepy' is not one of alive",
            "/ui/bots?dimensions=nocolon": "'nocolon' is not of the form key:value",
            "/ui/tasks?tags=nocolon": "tag 'nocolon' is not of the form key:value",
            "/ui/tasks?state=DONE": "parameter 'state': 'DONE'",
            "/ui/tasks?limit=0": "parameter 'limit'",
            "/ui/queues?cursor=x": "cursor 'x' is not a queue page cursor",
        },
    )


async def test_one_bot_shows_dimensions_state_events_and_tasks(browser: Browser) -> None:
    """A bot's page shows its dimensions, reported state, events and latest tasks."""
    bot = await browser.bot("bot1", gpu=["nvidia"])
    task_id = await browser.create_task(name="on bot1")
    await browser.run(bot)
    await bot.call(
        "event", {"session": bot.session, "event": "bot_log", "message": "disk is getting full"}
    )
    page = await browser.get("/ui/bots/bot1")
    assert "gpu:nvidia" in page.ids["dimensions"].text.replace(" ", "")
    assert '"running_time": 1' in page.ids["bot-state"].text
    events = page.ids["events"].text
    assert "bot_connected" in events
    assert "disk is getting full" in events
    assert task_id in linked(page, "/ui/tasks/")
    assert "on bot1" in page.ids["tasks"].text
    assert "/ui/tasks?bot=bot1" in page.links


async def test_unknown_bot_and_task_are_404_pages(browser: Browser) -> None:
    """Unknown bots and tasks, malformed task IDs and other UI paths answer HTML 404s."""
    await assert_error_pages(
        browser,
        404,
        {
            "/ui/bots/nobody": "No such bot: nobody",
            "/ui/tasks/5f0000000000000": "No such task",
            "/ui/tasks/not-a-task": "'not-a-task' is not a task ID",
            "/ui/nowhere": "no such page: /ui/nowhere",
        },
    )


async def test_tasks_are_listed_and_filtered(browser: Browser) -> None:
    """The task list filters by state, tags, pool and bot, newest first."""
    bot = await browser.bot("bot1")
    ran = await browser.create_task(name="ran", tags=["change:1"])
    await browser.run(bot)
    waiting = await browser.create_task(name="waits", tags=["change:2"], dims={"os": "Mac"})
    other = await browser.create_task(name="other", tags=["change:2", "kind:lint"])
    page = await browser.get("/ui/tasks")
    assert linked(page, "/ui/tasks/") == [other, waiting, ran]
    checks = {
        "state=RUNNING": [ran],
        "state=pending": [other, waiting],
        "tags=change:2": [other, waiting],
        "tags=change:2+kind:lint": [other],
        "tags=change:2&tags=kind:lint": [other],
        "pool=default": [other, waiting, ran],
        "pool=nope": [],
        "bot=bot1": [ran],
        "state=PENDING&state=RUNNING&tags=change:1": [ran],
    }
    for query, expected in checks.items():
        page = await browser.get(f"/ui/tasks?{query}")
        assert linked(page, "/ui/tasks/") == expected, query
    page = await browser.get("/ui/tasks?tags=change:2&pool=default")
    assert page.form("/ui/tasks").fields == {
        "state": "",
        "tags": "change:2",
        "pool": "default",
        "bot": "",
    }


async def test_task_list_pages_with_cursors(browser: Browser) -> None:
    """Pages of the task list follow each other by cursor and cover every task once."""
    created = [await browser.create_task(name=f"t{n}") for n in range(5)]
    seen, last = await walk(browser, "/ui/tasks?state=PENDING&limit=2", "/ui/tasks/")
    assert seen == created[::-1]
    assert "/ui/tasks?state=PENDING&limit=2" in last.links  # back to the first page


async def test_a_running_task_shows_its_request_result_log_and_results(browser: Browser) -> None:
    """A task's page shows its state, try, bot, request, the log so far and its results."""
    bot = await browser.bot("bot1")
    task_id = await browser.create_task(name="unit tests", tags=["change:7"], user="alice")
    run_id = await browser.run(bot, b"line one\nline two\n")
    for body in ({"unit": [UNIT]}, {"lint": [LINT], "work": "linting done"}):
        resp = await browser.client.post(f"/api/v1/tasks/{task_id}/results", json=body)
        assert resp.status == 200, await resp.text()
    page = await browser.get(f"/ui/tasks/{task_id}")
    assert page.ids["task-state"].text.strip() == "RUNNING"
    assert "try 1 (run" in page.text
    assert run_id in page.text
    assert "bot1" in linked(page, "/ui/bots/")
    log = page.ids["log"]
    assert log.text == "line one\nline two\n"
    assert log.attrs["data-active"] == "true"
    assert log.attrs["data-offset"] == "18"
    assert log.attrs["data-stream"] == f"/ui/tasks/{task_id}/stdout:stream"
    assert {"src": "/ui/static/log.js", "defer": ""} in page.scripts
    assert "echo hi" in page.ids["request"].text
    assert "alice" in page.ids["request"].text
    assert "change:7" in page.ids["timestamps"].text
    unit = page.ids["unit-results"].text
    assert "test_a" in unit
    assert "assert 1 == 2" in unit
    assert "fail 1" in unit
    assert "F401" in page.ids["lint-results"].text
    assert "a.py:3" in page.ids["lint-results"].text
    assert "linting done" in page.ids["work"].text
    assert "pending" not in page.ids

    await bot.update(run_id, exit_code=3, duration=2.5)
    page = await browser.get(f"/ui/tasks/{task_id}")
    assert page.ids["task-state"].text.strip() == "COMPLETED"
    assert "FAILURE" in page.ids["result"].text
    assert "2.5 s" in page.ids["result"].text
    assert page.ids["log"].attrs["data-active"] == "false"


async def test_a_long_log_shows_its_tail(browser: Browser) -> None:
    """A log past the page's share shows its last part and says so; the raw log has it all."""
    bot = await browser.bot("bot1")
    task_id = await browser.create_task()
    output = b"".join(b"%07d\n" % n for n in range(40_000))
    await browser.run(bot, output)
    page = await browser.get(f"/ui/tasks/{task_id}")
    shown = page.ids["log"].text.encode()
    assert len(shown) == 256 * 1024
    assert output.endswith(shown)
    assert f"The last {len(shown)} of {len(output)} bytes." in page.text
    raw = await browser.client.get(f"/ui/tasks/{task_id}/log")
    assert raw.content_type == "text/plain"
    assert await raw.read() == output


async def test_a_pending_task_says_why(browser: Browser) -> None:
    """A pending task's page reports per slice the matching bots and what no bot has."""
    await browser.bot("bot1")
    await browser.create_task(dims={"os": "Mac"})
    task_id = await browser.create_task(dims={"os": "Mac"})
    page = await browser.get(f"/ui/tasks/{task_id}")
    pending = page.ids["pending"].text
    assert "no live bot has os:Mac" in pending
    assert "(waiting)" in pending
    assert " 1 " in pending  # one task ahead in the queue


async def test_queues_count_pending_work_and_the_bots_that_match(browser: Browser) -> None:
    """The queues page shows each dimension set's pending tasks, its bots by state and why."""
    await browser.bot("linux1")
    busy = await browser.bot("linux2")
    await browser.create_task(name="takes linux2")
    await browser.run(busy)
    for _ in range(2):
        await browser.create_task(dims={"os": "Mac"})
    await browser.create_task(dims={"os": "Linux"})
    page = await browser.get("/ui/queues")
    rows = page.text
    assert "no live bot has os:Mac" in rows
    assert "1 matching bot is idle" in rows
    assert linked(page, "/ui/bots/") == ["linux1", "linux2"]
    # The first task's queue (pool only) is empty now: shown only on request.
    assert len([i for i in page.ids if i.startswith("queue-")]) == 2
    everything = await browser.get("/ui/queues?empty=1")
    assert len([i for i in everything.ids if i.startswith("queue-")]) == 3
    first = await browser.get("/ui/queues?limit=1")
    assert "no live bot has os:Mac" in first.text
    assert "1 matching bot is idle" not in first.text
    [following] = [link for link in first.links if "cursor=" in link]
    assert "1 matching bot is idle" in (await browser.get(following)).text
