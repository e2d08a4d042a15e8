"""Fixtures shared by the server tests: a real server on loopback over tmp state."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.app import ServerOptions, create_app
from server.appkeys import BOT_SERVICE
from server.clock import FakeClock
from server.config.live import LiveConfig
from server.store.sqlite import SqliteStore

# The one Datastore emulator of a test session, and a `store` of each backend
# (with more stores on its database), for every test that needs them.
from tests.store.backends import (
    backend,
    closing,
    database,
    open_replica,
    race_after_heads,
    store,
    store_clock,
)
from tests.store.datastore_emulator import datastore_emulator

__all__ = [
    "backend",
    "closing",
    "database",
    "datastore_emulator",
    "open_replica",
    "race_after_heads",
    "store",
    "store_clock",
]

ROOT = pathlib.Path(__file__).resolve().parent.parent

ServerFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


def app_of(client: TestClient) -> web.Application:  # type: ignore[type-arg]
    """The application a test client's server runs."""
    app = client.app
    assert isinstance(app, web.Application), "the client runs an application server"
    return app


async def until_held(client: TestClient, count: int = 1) -> None:  # type: ignore[type-arg]
    """Returns once the client's server holds `count` polls; fails after about a second."""
    waiters = app_of(client)[BOT_SERVICE].waiters
    for _ in range(100):
        if waiters.held >= count:
            break
        await asyncio.sleep(0.01)
    assert waiters.held == count


@pytest.fixture
def config_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A private copy of the quickstart configs."""
    target = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", target, ignore=shutil.ignore_patterns("examples"))
    # Polls answer at once unless a test turns long polling on. Callers need no
    # token (tests/api/test_auth.py and its kin write their own settings).
    (target / "settings.cfg").write_text('long_poll_secs: 0\nanonymous_role: "admin"\n')
    return target


@pytest.fixture
async def sqlite_store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A fresh SqliteStore in tmp_path, closed at teardown."""
    opened = await SqliteStore.open(tmp_path / "drover.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    """The injected clock, at a fixed start time."""
    return FakeClock()


@pytest.fixture
async def make_server(
    tmp_path: pathlib.Path, config_dir: pathlib.Path, clock: FakeClock
) -> AsyncIterator[ServerFactory]:
    """Starts Drover servers on loopback; each is closed at teardown.

    Servers started by one test share the state directory, so several of
    them are replicas on one SQLite file. Their re-check of the Store
    (server/replicas.py) is off unless a test sets `recheck_secs`.
    """
    clients: list[TestClient] = []  # type: ignore[type-arg]

    async def start(grpc: bool = False, recheck_secs: float = 0, **kwargs: object) -> TestClient:  # type: ignore[type-arg]
        config = LiveConfig(config_dir, clock=clock)
        options = ServerOptions(
            state_dir=tmp_path / "state",
            config_dir=config_dir,
            server_url="http://127.0.0.1:1",
            config_poll_secs=0,
            sweep_secs=0,
            grpc_port=0 if grpc else None,
            recheck_secs=recheck_secs,
        )
        app = await create_app(options, clock=clock, config=config, **kwargs)  # type: ignore[arg-type]
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
