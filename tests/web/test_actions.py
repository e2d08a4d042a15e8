"""The action buttons: each is its client API call, under the same rules, behind a CSRF check."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Browser, StartBrowser

NO_ANONYMOUS = "long_poll_secs: 0\n"


async def api(browser: Browser, path: str) -> Any:
    """A client API answer, read as an admin."""
    token = await browser.token("reader", "admin")
    resp = await browser.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_scheduler_cancels_retries_pauses_and_resumes_from_the_task_page(
    start_browser: StartBrowser,
) -> None:
    """The buttons of a task's page change it as the API calls would, then show it again."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    await browser.sign_in("alice", "scheduler")
    task_id = await browser.create_task()
    page = await browser.get(f"/ui/tasks/{task_id}")
    resp = await browser.submit(page, f"/ui/tasks/{task_id}/pause")
    assert resp.status == 303
    assert resp.headers["Location"] == f"/ui/tasks/{task_id}?done=pause&changed=1"
    page = await browser.get(resp.headers["Location"])
    assert "pause: done." in page.text
    assert (await api(browser, f"/api/v1/tasks/{task_id}"))["paused"] is True
    resp = await browser.submit(page, f"/ui/tasks/{task_id}/resume")
    assert (await api(browser, f"/api/v1/tasks/{task_id}"))["paused"] is False
    page = await browser.get(resp.headers["Location"])
    resp = await browser.submit(page, f"/ui/tasks/{task_id}/cancel")
    assert resp.status == 303
    assert (await api(browser, f"/api/v1/tasks/{task_id}"))["state"] == "CANCELED"
    page = await browser.get(resp.headers["Location"])
    assert not page.has_form(f"/ui/tasks/{task_id}/cancel")
    resp = await browser.submit(page, f"/ui/tasks/{task_id}/retry")
    assert resp.status == 303
    new_id = resp.headers["Location"].removeprefix("/ui/tasks/")
    assert new_id != task_id
    rerun = await api(browser, f"/api/v1/tasks/{new_id}")
    assert f"retry_of:{task_id}" in rerun["tags"]
    assert rerun["state"] == "PENDING"


async def test_a_running_task_is_killed_from_its_page(browser: Browser) -> None:
    """Kill asks the running task's bot to stop it."""
    bot = await browser.bot("bot1")
    task_id = await browser.create_task()
    run_id = await browser.run(bot)
    page = await browser.get(f"/ui/tasks/{task_id}")
    resp = await browser.submit(page, f"/ui/tasks/{task_id}/kill")
    assert resp.status == 303
    assert (await bot.update(run_id))["must_stop"] is True


async def test_a_form_without_the_browsers_csrf_token_changes_nothing(
    start_browser: StartBrowser,
) -> None:
    """A post without the CSRF token, or with another one, is a 403 and the task stays."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    await browser.sign_in("alice", "scheduler")
    task_id = await browser.create_task()
    for fields in ({}, {"csrf": "forged"}, {"csrf": ""}):
        resp = await browser.post(f"/ui/tasks/{task_id}/cancel", fields)
        assert resp.status == 403
        assert "CSRF token does not match" in await resp.text()
    assert (await api(browser, f"/api/v1/tasks/{task_id}"))["state"] == "PENDING"


async def test_buttons_obey_the_roles_of_their_api_calls(start_browser: StartBrowser) -> None:
    """A viewer gets no buttons and a forced post is refused; a scheduler may not
    administer bots; nothing changes."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    await browser.bot("bot1")
    await browser.sign_in("vera", "viewer")
    task_id = await browser.create_task()
    page = await browser.get(f"/ui/tasks/{task_id}")
    assert not page.has_form(f"/ui/tasks/{task_id}/cancel")
    csrf = page.form("/ui/signout").fields["csrf"]
    resp = await browser.post(f"/ui/tasks/{task_id}/cancel", {"csrf": csrf})
    assert resp.status == 403
    assert "Tasks.CancelTask needs the scheduler role and user:vera holds the viewer role" in (
        await resp.text()
    )
    assert (await api(browser, f"/api/v1/tasks/{task_id}"))["state"] == "PENDING"
    await browser.sign_in("sam", "scheduler")
    page = await browser.get("/ui/bots/bot1")
    assert not page.has_form("/ui/bots/bot1/quarantine")
    resp = await browser.post("/ui/bots/bot1/quarantine", {"csrf": csrf, "message": "no"})
    assert resp.status == 403
    assert "Bots.QuarantineBot needs the admin role" in await resp.text()
    assert (await api(browser, "/api/v1/bots/bot1")).get("quarantined", False) is False


async def test_an_admin_quarantines_puts_in_maintenance_and_terminates_a_bot(
    start_browser: StartBrowser,
) -> None:
    """The bot page's buttons set and clear the admin quarantine and maintenance, with the
    message typed, and queue a termination task."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    await browser.bot("bot1")
    await browser.sign_in("ann", "admin")
    page = await browser.get("/ui/bots/bot1")
    resp = await browser.submit(page, "/ui/bots/bot1/quarantine", message="  bad disk  ")
    assert resp.status == 303
    assert resp.headers["Location"] == "/ui/bots/bot1?done=quarantine"
    page = await browser.get(resp.headers["Location"])
    assert "bad disk" in page.ids["status"].text
    assert page.ids["bot-state"] is not None
    assert (await browser.get("/ui/bots?state=quarantined")).links.count("/ui/bots/bot1") == 1
    resp = await browser.submit(page, "/ui/bots/bot1/unquarantine")
    page = await browser.get(resp.headers["Location"])
    assert "bad disk" not in page.ids["status"].text
    resp = await browser.submit(page, "/ui/bots/bot1/maintenance", message="new kernel")
    page = await browser.get(resp.headers["Location"])
    assert "new kernel" in page.ids["status"].text
    resp = await browser.submit(page, "/ui/bots/bot1/end_maintenance")
    page = await browser.get(resp.headers["Location"])
    assert "new kernel" not in page.ids["status"].text
    resp = await browser.submit(page, "/ui/bots/bot1/terminate")
    page = await browser.get(resp.headers["Location"])
    assert "Asked to terminate" in page.ids["status"].text
    assert not page.has_form("/ui/bots/bot1/terminate")


async def test_unknown_actions_and_targets_are_404_pages(browser: Browser) -> None:
    """An action no button offers, or on a task or bot that does not exist, is a 404 page."""
    task_id = await browser.create_task()
    page = await browser.get(f"/ui/tasks/{task_id}")
    csrf = page.form(f"/ui/tasks/{task_id}/cancel").fields["csrf"]
    for path in (
        f"/ui/tasks/{task_id}/explode",
        "/ui/tasks/5f0000000000000/cancel",
        "/ui/bots/nobody/terminate",
        "/ui/bots/nobody/explode",
    ):
        resp = await browser.post(path, {"csrf": csrf})
        assert resp.status == 404, path
        assert resp.content_type == "text/html"
