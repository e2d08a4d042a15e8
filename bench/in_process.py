"""Drover's bot services driven in the bench's own process: no sockets for the bots.

An app built by create_app over a fresh SQLite state directory, served
on loopback by aiohttp's test server (the client API, for creating tasks),
with bots that call BotService and RunService directly (`ServiceBot`).
The store's connection counts the time its statements take
(`TimedConnection.seconds`), so a script can report SQLite's share.
bench/b1_services.py and bench/b2_services.py are built on it.
"""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from figures import Json
from server_process import prepare_dirs

from server.app import ServerOptions, create_app
from server.appkeys import BOT_SERVICE, RUN_SERVICE
from server.botapi import messages
from server.cli.serve import GC_THRESHOLDS
from server.store import sqlite_schema

CREDENTIALS = messages.BotCredentials(remote_ip="127.0.0.1", headers={})


class TimedConnection(sqlite3.Connection):
    """A connection that adds up the time its statements take (the store's SQLite work)."""

    seconds = 0.0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        start = time.process_time()
        try:
            return super().execute(sql, parameters)
        finally:
            TimedConnection.seconds += time.process_time() - start

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        start = time.process_time()
        try:
            return super().executemany(sql, parameters)
        finally:
            TimedConnection.seconds += time.process_time() - start


class _Sqlite3WithTimedConnect:
    """The sqlite3 module as sqlite_schema sees it, its connect making TimedConnections."""

    def __getattr__(self, name: str) -> Any:
        value = getattr(sqlite3, name)
        return _timed_connect(value) if name == "connect" else value


def _timed_connect(connect: Callable[..., sqlite3.Connection]) -> Callable[..., sqlite3.Connection]:
    def timed(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, factory=TimedConnection, **kwargs)

    return timed


@contextlib.asynccontextmanager
async def served_app(settings: Json) -> AsyncIterator[tuple[Any, TestClient]]:  # type: ignore[type-arg]
    """The app with `settings`, served on loopback in this process, and a client of it."""
    gc.set_threshold(*GC_THRESHOLDS)
    # The store's connection (and only it: the checkpointer opens its own
    # with sqlite3.connect) counts its statements' time.
    setattr(sqlite_schema, "sqlite3", _Sqlite3WithTimedConnect())  # noqa: B010
    with tempfile.TemporaryDirectory(prefix="drover-inproc-") as tmp:
        state, configs = prepare_dirs(Path(tmp), settings)
        app = await create_app(
            ServerOptions(state_dir=state, config_dir=configs, server_url="http://127.0.0.1:1")
        )
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            yield app, client
        finally:
            await client.close()


async def bot_version(client: TestClient) -> str:  # type: ignore[type-arg]
    """The bot code version the server expects (GET /api/v1/server)."""
    async with client.get("/api/v1/server") as resp:
        version: str = (await resp.json())["bot_version"]
    return version


class ServiceBot:
    """A bot whose calls go straight to the app's BotService and RunService."""

    def __init__(self, app: Any, bot_id: str, version: str) -> None:
        self.bot_id = bot_id
        self._polls, self._runs = app[BOT_SERVICE], app[RUN_SERVICE]
        self._report: dict[str, Any] = {
            "dimensions": {"id": [bot_id], "os": ["Linux"], "pool": ["default"]},
            "state": {"running_time": 1, "sleep_streak": 0},
            "version": version,
        }
        self._session = ""

    async def handshake(self) -> None:
        body = {**self._report, "session_id": f"{uuid.uuid4().hex}/1"}
        answer = await self._polls.handshake(messages.parse_handshake(body), CREDENTIALS)
        self._session = answer["session"]

    async def poll(self) -> dict[str, Any]:
        """One poll; its answer (`run` carries the run's ID in manifest.task_id)."""
        body = {**self._report, "session": self._session, "request_uuid": uuid.uuid4().hex}
        reply: dict[str, Any] = await self._polls.poll(messages.parse_poll(body), CREDENTIALS)
        self._session = reply.get("session") or self._session
        return reply

    async def complete(self, run_id: str) -> None:
        """The run's one task_update: exit code 0, no output."""
        update: dict[str, Any] = {"id": self.bot_id, "task_id": run_id, "session": self._session}
        update |= {"cost_usd": 0.0, "exit_code": 0, "duration": 0.0}
        answer = await self._runs.task_update(messages.parse_task_update(update), CREDENTIALS)
        if not answer.get("ok"):
            raise RuntimeError(f"task_update refused: {answer}")
