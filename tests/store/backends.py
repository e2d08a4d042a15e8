"""Store fixtures for every test (tests/conftest.py registers them): a `store` per backend.

A test taking `store` runs once per entry of BACKENDS: the contract suite
(tests/store/test_contract*.py), and tests of code that must work on every
backend. A new backend joins them by registering a Backend here. The
Datastore backend runs against the emulator (datastore_emulator.py),
started on first use and shared by the session; each test gets a fresh
namespace, so tests never see each other's entities. `open_replica` opens
more stores on the database of `store`: other server processes on one
SQLite file, other replicas on one Datastore namespace. A module that
defines its own `store` fixture keeps it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sqlite3
import threading
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

import pytest

from server.clock import FakeClock
from server.store import datastore_tasks, sqlite_polls
from server.store.base import Store
from server.store.sqlite import SqliteStore
from tests.store.datastore_emulator import Emulator, new_namespace
from tests.store.records import NOW

# Opens a store on the database named by the string (a file, a namespace).
Opener = Callable[[pytest.FixtureRequest, str, FakeClock], Awaitable[Store]]
# Opens one more store on the database of the test's `store`.
ReplicaOpener = Callable[[], Awaitable[Store]]
# Runs on another store of the same database, at a chosen moment.
Interference = Callable[[Store], Awaitable[None]]
# Arranges for an Interference to run in claim_next's window (race_after_heads).
RaceArranger = Callable[[Interference], None]
S = TypeVar("S", bound=Store)


class Closer(Protocol):
    """Registers a store to close at teardown and returns it (the `closing` fixture)."""

    def __call__(self, store: S) -> S: ...


@dataclasses.dataclass(frozen=True)
class Backend:
    """How the contract tests open the stores of one backend."""

    open: Opener
    # A fresh database for one test: a file path, or a namespace.
    new_database: Callable[[pathlib.Path], str]
    # The module whose `queue_heads` claim_next reads the queues' heads with.
    heads_module: types.ModuleType
    # What a call on a closed store raises.
    closed_error: type[Exception]
    marks: tuple[pytest.MarkDecorator, ...] = ()


async def _open_sqlite(request: pytest.FixtureRequest, path: str, clock: FakeClock) -> Store:
    return await SqliteStore.open(path, clock=clock)


async def _open_datastore(
    request: pytest.FixtureRequest, namespace: str, clock: FakeClock
) -> Store:
    emulator: Emulator = request.getfixturevalue("datastore_emulator")
    return await emulator.open_store(namespace, clock=clock)


BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(
        _open_sqlite,
        lambda tmp_path: str(tmp_path / "drover.sqlite3"),
        sqlite_polls,
        sqlite3.ProgrammingError,
    ),
    # `-m "not datastore"` leaves out the backend that needs java.
    "datastore": Backend(
        _open_datastore,
        lambda tmp_path: new_namespace(),
        datastore_tasks,
        RuntimeError,
        (pytest.mark.datastore,),
    ),
}


@pytest.fixture(params=[pytest.param(n, marks=b.marks) for n, b in sorted(BACKENDS.items())])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each registered backend in turn."""
    chosen: Backend = BACKENDS[request.param]
    return chosen


@pytest.fixture
def database(backend: Backend, tmp_path: pathlib.Path) -> str:
    """The test's database: every store the test opens uses it."""
    return backend.new_database(tmp_path)


@pytest.fixture
def store_clock() -> FakeClock:
    """The clock of the test's stores (it decides when poll replies expire)."""
    return FakeClock(NOW)


@pytest.fixture
async def store(
    backend: Backend, database: str, store_clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    """An empty store of each backend, closed at teardown."""
    opened = await backend.open(request, database, store_clock)
    yield opened
    await opened.close()


@pytest.fixture
async def closing() -> AsyncIterator[Closer]:
    """Closes at teardown every store handed to it, in the order they were opened."""
    opened: list[Store] = []

    def register(store: S) -> S:
        opened.append(store)
        return store

    yield register
    for store in opened:
        await store.close()


@pytest.fixture
def open_replica(
    backend: Backend,
    database: str,
    store_clock: FakeClock,
    request: pytest.FixtureRequest,
    closing: Closer,
) -> ReplicaOpener:
    """Opens more stores on the database of `store`; all are closed at teardown."""

    async def open_() -> Store:
        return closing(await backend.open(request, database, store_clock))

    return open_


@pytest.fixture
def race_after_heads(
    backend: Backend,
    database: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> RaceArranger:
    """Arranges for `interfere` to run on another store right after a claim reads the heads.

    That is the window between claim_next's read of the queue heads and its
    transaction, where another process or replica may act. The other store
    lives in a thread of its own with its own event loop, as a store's
    connection is bound to the thread that opened it; the claim waits for it.
    """
    read_heads = backend.heads_module.queue_heads

    def arrange(interfere: Interference) -> None:
        raced = threading.Event()

        async def elsewhere() -> None:
            other = await backend.open(request, database, FakeClock(NOW))
            try:
                await interfere(other)
            finally:
                await other.close()

        def racing_heads(*args: Any) -> Iterator[Any]:
            heads = list(read_heads(*args))
            if not raced.is_set():
                # Set first: a claim the interference makes reads heads too.
                raced.set()
                thread = threading.Thread(target=lambda: asyncio.run(elsewhere()))
                thread.start()
                thread.join()
            yield from heads

        monkeypatch.setattr(backend.heads_module, "queue_heads", racing_heads)

    return arrange
