"""Fixtures of the Store tests: one `store` per registered backend.

The contract suite (test_contract.py) runs once per entry of BACKENDS, so a
new backend joins it by registering a factory here.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from server.clock import FakeClock
from server.store.base import Store
from server.store.sqlite import SqliteStore

# Opens an empty store whose files, if any, go under the given directory.
StoreFactory = Callable[[pathlib.Path], Awaitable[Store]]


async def _open_sqlite(tmp_path: pathlib.Path) -> Store:
    return await SqliteStore.open(tmp_path / "drover.sqlite3", clock=FakeClock())


BACKENDS: dict[str, StoreFactory] = {"sqlite": _open_sqlite}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Store]:
    """An empty store of each backend, closed at teardown."""
    opened = await BACKENDS[request.param](tmp_path)
    yield opened
    await opened.close()
