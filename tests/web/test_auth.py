"""Who may see the pages: the client API's rules, with the token from a header or a cookie."""

from __future__ import annotations

import ssl

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from server.web import gate
from tests.web.conftest import Browser, StartBrowser

NO_ANONYMOUS = "long_poll_secs: 0\n"
ANONYMOUS_VIEWER = 'long_poll_secs: 0\nanonymous_role: "viewer"\n'
PAGES = ["/", "/ui/bots", "/ui/tasks", "/ui/queues"]


async def some_task(browser: Browser, token: str) -> str:
    """A pending task made through the client API with `token`."""
    resp = await browser.client.post(
        "/api/v1/tasks",
        json={
            "name": "t",
            "task_slices": [
                {
                    "expiration_secs": 600,
                    "wait_for_capacity": True,
                    "properties": {
                        "command": ["true"],
                        "dimensions": [{"key": "pool", "value": "default"}],
                    },
                }
            ],
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["task_id"])


async def test_anonymous_callers_without_a_role_get_401_pages_with_the_sign_in_form(
    start_browser: StartBrowser,
) -> None:
    """Without anonymous access every page is a 401 saying what is missing, with a sign-in
    form that comes back to the page."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    task_id = await some_task(browser, await browser.token("admin", "admin"))
    for path in [*PAGES, f"/ui/tasks/{task_id}", "/ui/bots/bot1"]:
        resp = await browser.client.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="drover"'
        page = await browser.get(path, status=401)
        assert "needs the viewer role and callers without a token hold no role" in page.text
        form = page.form("/ui/signin")
        assert form.fields["next"] == path
        assert set(form.fields) == {"csrf", "next", "token"}
    stream = await browser.client.get(f"/ui/tasks/{task_id}/stdout:stream")
    assert stream.status == 401
    assert "viewer role" in (await stream.json())["error"]["message"]


async def test_anonymous_viewers_read_every_page_without_buttons(
    start_browser: StartBrowser,
) -> None:
    """With anonymous_role viewer the pages show, without the buttons a viewer may not use."""
    browser = await start_browser(settings=ANONYMOUS_VIEWER)
    bot = await browser.bot("bot1")
    task_id = await some_task(browser, await browser.token("alice", "scheduler"))
    for path in PAGES:
        page = await browser.get(path)
        assert "anonymous (viewer)" in page.text
    page = await browser.get(f"/ui/tasks/{task_id}")
    assert not any(form.method == "post" and "/ui/tasks/" in form.action for form in page.forms)
    page = await browser.get("/ui/bots/bot1")
    assert not any("/ui/bots/" in form.action for form in page.forms)
    assert bot.session


async def test_a_token_in_the_header_or_a_cookie_is_accepted(start_browser: StartBrowser) -> None:
    """A good token works from the Authorization header and from the sign-in cookie alike."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    token = await browser.token("alice", "viewer")
    for path in PAGES:
        page = await browser.get(path, headers={"Authorization": f"Bearer {token}"})
        assert "user:alice (viewer)" in page.text
        page = await browser.get(path, headers={"Cookie": f"{gate.TOKEN_COOKIE}={token}"})
        assert "user:alice (viewer)" in page.text


async def test_bad_tokens_are_401_pages_saying_why(start_browser: StartBrowser) -> None:
    """A bad token, in the header or the cookie, is refused even where anonymous callers
    may read; a refused cookie is offered a way out (sign out)."""
    browser = await start_browser(settings=ANONYMOUS_VIEWER)
    forged = "drv_0123456789abcdef_" + "x" * 43
    page = await browser.get("/ui/tasks", status=401, headers={"Authorization": f"Bearer {forged}"})
    assert "this server never issued it" in page.text
    page = await browser.get("/ui/tasks", status=401, headers={"Authorization": "Basic abc"})
    assert "must be 'Bearer <token>'" in page.text
    page = await browser.get(
        "/ui/tasks", status=401, headers={"Cookie": f"{gate.TOKEN_COOKIE}=nonsense"}
    )
    assert "of no kind this server knows" in page.text
    assert page.has_form("/ui/signout")
    assert "token refused" in page.text


async def test_signing_in_keeps_the_token_in_a_strict_httponly_cookie(
    start_browser: StartBrowser,
) -> None:
    """The sign-in form checks the token, keeps it in an HttpOnly SameSite=Strict cookie
    (not Secure over plain http) and returns to the page; signing out forgets it."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    token = await browser.token("alice", "viewer")
    page = await browser.get("/ui/signin?next=/ui/queues")
    resp = await browser.submit(page, "/ui/signin", token=token)
    assert resp.status == 303
    assert resp.headers["Location"] == "/ui/queues"
    cookie = resp.cookies[gate.TOKEN_COOKIE]
    assert cookie.value == token
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]
    assert cookie["path"] == "/"
    page = await browser.get("/ui/queues")
    assert "user:alice (viewer)" in page.text
    resp = await browser.submit(page, "/ui/signout")
    assert resp.status == 303
    await browser.get("/ui/queues", status=401)


async def test_sign_in_refuses_bad_tokens_and_forged_forms(start_browser: StartBrowser) -> None:
    """A refused token re-shows the form saying why and sets no cookie; a form without the
    browser's CSRF token is a 403; `next` never leads off the server."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    page = await browser.get("/ui/signin")
    resp = await browser.submit(page, "/ui/signin", token="drv_nope")
    assert resp.status == 401
    assert "not an API token as issued" in await resp.text()
    assert gate.TOKEN_COOKIE not in resp.cookies
    resp = await browser.submit(page, "/ui/signin", token="")
    assert resp.status == 401
    token = await browser.token("alice", "viewer")
    forged = await browser.post("/ui/signin", {"token": token, "next": "/", "csrf": "guess"})
    assert forged.status == 403
    assert "CSRF token does not match" in await forged.text()
    assert gate.TOKEN_COOKIE not in forged.cookies
    for target in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
    ]:
        resp = await browser.submit(page, "/ui/signin", token=token, next=target)
        assert resp.status == 303
        assert resp.headers["Location"] == "/"


@pytest.mark.parametrize(("secure", "expected"), [(False, False), (True, True)])
def test_cookies_are_secure_over_https(secure: bool, expected: bool) -> None:
    """The sign-in and CSRF cookies carry Secure exactly when the page came over https."""
    request = make_mocked_request(
        "GET",
        "/",
        headers={"Host": "drover"},
        sslcontext=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) if secure else None,
    )
    assert request.secure is secure
    response = web.Response()
    gate.set_token_cookie(response, request, "drv_x")
    gate.csrf_token(request)
    gate.set_csrf_cookie(response, request)
    for name in (gate.TOKEN_COOKIE, gate.CSRF_COOKIE):
        morsel = response.cookies[name]
        assert bool(morsel["secure"]) is expected
        assert morsel["samesite"] == "Strict"
        assert morsel["httponly"] is True


async def test_the_live_log_follows_the_cookie(start_browser: StartBrowser) -> None:
    """The page's log stream and raw log accept the sign-in cookie like the pages do."""
    browser = await start_browser(settings=NO_ANONYMOUS)
    token = await browser.token("alice", "viewer")
    task_id = await some_task(browser, await browser.token("admin", "admin"))
    cookie = {"Cookie": f"{gate.TOKEN_COOKIE}={token}"}
    assert (await browser.client.get(f"/ui/tasks/{task_id}/log")).status == 401
    assert (await browser.client.get(f"/ui/tasks/{task_id}/log", headers=cookie)).status == 200
    resp = await browser.client.get(f"/ui/tasks/{task_id}/stdout:stream", headers=cookie)
    assert resp.status == 200
    assert resp.content_type == "application/x-ndjson"
    first = await resp.content.readline()
    assert b'"state":"PENDING"' in first
    resp.close()
    # The client API itself reads no cookie.
    api = await browser.client.get(f"/api/v1/tasks/{task_id}/stdout", headers=cookie)
    assert api.status == 401
