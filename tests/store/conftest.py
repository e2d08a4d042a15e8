"""Fixtures of the Store tests: one `store` per registered backend.

The contract suite (test_contract.py, test_contract_lookups.py) runs once
per entry of BACKENDS, so a new backend joins it by registering a factory
here. The Datastore backend runs against the emulator (datastore_emulator),
started on first use and shared by the session; each store gets a fresh
namespace, so tests never see each other's entities.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from server.clock import FakeClock
from server.store.base import Store
from server.store.sqlite import SqliteStore
from tests.store.datastore_emulator import Emulator, EmulatorUnavailable

# Opens an empty store; files, if any, go under the given directory.
StoreFactory = Callable[[pytest.FixtureRequest, pathlib.Path], Awaitable[Store]]


async def _open_sqlite(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Store:
    return await SqliteStore.open(tmp_path / "drover.sqlite3", clock=FakeClock())


async def _open_datastore(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Store:
    emulator: Emulator = request.getfixturevalue("datastore_emulator")
    return await emulator.open_store(clock=FakeClock())


BACKENDS: dict[str, StoreFactory] = {"sqlite": _open_sqlite, "datastore": _open_datastore}
# `-m "not datastore"` leaves out the backend that needs java.
MARKS = {"datastore": [pytest.mark.datastore]}


@pytest.fixture(scope="session")
def datastore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The Datastore emulator, started on first use and stopped when the session ends.

    Without java or the emulator the tests using it fail, saying what to
    install: in CI they must run, never skip.
    """
    log_path = tmp_path_factory.mktemp("datastore-emulator") / "emulator.log"
    try:
        emulator = Emulator.start(log_path)
    except EmulatorUnavailable as e:
        pytest.fail(f"Datastore emulator unavailable: {e}", pytrace=False)
    yield emulator
    emulator.stop()


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, [])) for name in sorted(BACKENDS)])
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Store]:
    """An empty store of each backend, closed at teardown."""
    opened = await BACKENDS[request.param](request, tmp_path)
    yield opened
    await opened.close()
