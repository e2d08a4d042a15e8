"""Every string a user, a bot or a task controls reaches the pages as text, never as markup."""

from __future__ import annotations

from tests.web.conftest import Browser
from tests.web.html import Page

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


def assert_inert(page: Page, *payloads: str) -> None:
    """Each payload shows as text; no markup of it reached the page, and the only
    script is the UI's own."""
    for payload in payloads:
        assert payload not in page.source
        assert payload in page.text
    assert "img" not in page.tags
    assert all(script == {"src": "/ui/static/log.js", "defer": ""} for script in page.scripts)


async def test_task_strings_are_escaped_everywhere(browser: Browser) -> None:
    """A task's name, tags, user, command and log with markup in them render as text."""
    bot = await browser.bot("bot1")
    task_id = await browser.create_task(
        ["echo", SCRIPT], name=SCRIPT, tags=[f"note:{IMG}"], user=SCRIPT
    )
    await browser.run(bot, f"{SCRIPT}\n{IMG}\n".encode())
    resp = await browser.client.post(
        f"/api/v1/tasks/{task_id}/results",
        json={
            "unit": [{"name": SCRIPT, "result": "fail", "details": IMG}],
            "lint": [{"name": IMG, "code": "X1", "severity": "error", "description": SCRIPT}],
            "work": SCRIPT,
        },
    )
    assert resp.status == 200, await resp.text()
    page = await browser.get(f"/ui/tasks/{task_id}")
    assert_inert(page, SCRIPT, IMG)
    assert page.ids["log"].text == f"{SCRIPT}\n{IMG}\n"
    assert_inert(await browser.get("/ui/tasks"), SCRIPT, IMG)
    # A filter value is echoed into its form field as an attribute, escaped too.
    breakout = 'note:"autofocus="onfocus=alert(3)'
    listing = await browser.get("/ui/tasks", params={"tags": breakout})
    assert breakout not in listing.source
    assert listing.form("/ui/tasks").fields["tags"] == breakout


async def test_bot_strings_are_escaped_everywhere(browser: Browser) -> None:
    """A bot's dimensions, state, quarantine message and events with markup render as text."""
    bot = await browser.bot("bot1", note=[SCRIPT])
    bot.state["quarantined"] = IMG
    await bot.handshake()
    await bot.call("event", {"session": bot.session, "event": "bot_log", "message": SCRIPT})
    resp = await browser.client.post("/api/v1/bots/bot1:maintenance", json={"message": SCRIPT})
    assert resp.status == 200
    page = await browser.get("/ui/bots/bot1")
    assert_inert(page, SCRIPT, IMG)
    assert SCRIPT in page.ids["dimensions"].text
    assert_inert(await browser.get("/ui/bots"), SCRIPT, IMG)
    await browser.create_task(dims={"note": SCRIPT})
    assert_inert(await browser.get("/ui/queues"), SCRIPT)


async def test_error_messages_are_escaped(browser: Browser) -> None:
    """An error page quoting the caller's input shows it as text."""
    page = await browser.get(f"/ui/bots/{SCRIPT.replace('/', '%2F')}", status=404)
    assert "<script>" not in page.source
    page = await browser.get(f"/ui/tasks?state={SCRIPT.replace('/', '%2F')}", status=400)
    assert "<script>" not in page.source.lower()
    assert SCRIPT.upper() in page.text
