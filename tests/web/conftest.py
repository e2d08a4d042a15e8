"""Fixtures of the web UI tests: a real server on loopback, read as a browser would.

`Browser` fetches pages like a browser without JavaScript: it keeps the
cookies the server sets (aiohttp's test client jar), follows no redirect by
itself, and parses each page with tests/web/html.py.
"""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.appkeys import BOTCODE, STORE
from server.auth.tokens import ApiTokenService
from server.clock import FakeClock
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import ServerFactory, app_of
from tests.web.html import Page


class Browser:
    """One browser on one server."""

    def __init__(self, client: TestClient, clock: FakeClock) -> None:  # type: ignore[type-arg]
        self.client = client
        self.clock = clock
        # The admin token the helpers below use when anonymous callers may not.
        self._admin = ""

    async def get(self, path: str, status: int = 200, **kwargs: Any) -> Page:
        """The page at `path`, after checking its status and that it is HTML."""
        resp = await self.client.get(path, allow_redirects=False, **kwargs)
        text = await resp.text()
        assert resp.status == status, f"GET {path}: {resp.status} {text[:2000]}"
        assert resp.content_type == "text/html", resp.content_type
        return Page(text)

    async def post(self, path: str, fields: dict[str, str], **kwargs: Any) -> Any:
        """The response to a form post (not followed)."""
        return await self.client.post(path, data=fields, allow_redirects=False, **kwargs)

    async def submit(self, page: Page, action: str, **fields: str) -> Any:
        """Posts a form of `page` with its own fields (the CSRF token among them)."""
        return await self.post(action, {**page.form(action).fields, **fields})

    async def sign_in(self, name: str, role: str) -> str:
        """Signs in through the form with a new token of `role`; returns the token."""
        token = await self.token(name, role)
        resp = await self.submit(await self.get("/ui/signin"), "/ui/signin", token=token)
        assert resp.status == 303, await resp.text()
        return token

    async def token(self, name: str, role: str) -> str:
        """A new API token, made as `drover token create --state-dir` does."""
        tokens = ApiTokenService(app_of(self.client)[STORE], self.clock)
        token, _ = await tokens.create(name, role, created_by="local")
        return token

    async def create_task(
        self, command: list[str] | None = None, *, dims: dict[str, str] | None = None, **body: Any
    ) -> str:
        """Creates a task through the client API, waiting for capacity, in pool `default`
        and with `dims` more; returns its ID."""
        request = task_body(command, wait=True, **body)
        pairs = [{"key": k, "value": v} for k, v in (dims or {}).items()]
        request["task_slices"][0]["properties"]["dimensions"].extend(pairs)
        if not self._admin:
            self._admin = await self.token("helper", "admin")
        headers = {"Authorization": f"Bearer {self._admin}"}
        resp = await self.client.post("/api/v1/tasks", json=request, headers=headers)
        assert resp.status == 200, await resp.text()
        # Tasks of one millisecond order by their random ID bits: keep them apart.
        self.clock.advance(1)
        return str((await resp.json())["task_id"])

    async def bot(self, bot_id: str = "bot1", **dimensions: list[str]) -> ScriptedBot:
        """A scripted bot that has handshaken and polled once."""
        bot = ScriptedBot(self.client, bot_id, app_of(self.client)[BOTCODE].stable.digest)
        bot.dimensions.update(dimensions)
        await bot.handshake()
        await bot.poll()
        return bot

    async def run(self, bot: ScriptedBot, output: bytes = b"") -> str:
        """Makes `bot` take the next task and claim it, writing `output`; returns the run ID."""
        answer = await bot.poll()
        assert answer["cmd"] == "run", answer
        run_id = str(answer["manifest"]["task_id"])
        await bot.claim(run_id)
        if output:
            await bot.update(run_id, output, 0)
        return run_id


StartBrowser = Callable[..., Awaitable[Browser]]


@pytest.fixture
def start_browser(
    make_server: ServerFactory, config_dir: pathlib.Path, clock: FakeClock
) -> StartBrowser:
    """Starts a server after writing the given config files (settings="..." etc.)."""

    async def start(**files: str) -> Browser:
        for name, text in files.items():
            (config_dir / f"{name}.cfg").write_text(text)
        return Browser(await make_server(), clock)

    return start


@pytest.fixture
async def browser(start_browser: StartBrowser) -> Browser:
    """A server whose anonymous callers are admins (tests/conftest.py's settings)."""
    return await start_browser()
