"""`drover session-keys rotate`: a new signing key for bot sessions, in the Store."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Awaitable, Callable

import pytest

from server.auth import session_keystore
from server.store.base import Store
from server.store.sqlite import SqliteStore
from tests.cli.conftest import run_drover
from tests.store.datastore_emulator import Emulator, new_namespace


async def close_new(state_dir: pathlib.Path) -> None:
    """Creates the state directory's SQLite store, as a server's first start does."""
    await (await SqliteStore.open(state_dir / "drover.sqlite3")).close()


def stored_key_ids(open_store: Callable[[], Awaitable[Store]]) -> tuple[str, ...]:
    """The session key IDs in the store `open_store` opens, oldest first."""

    async def read() -> tuple[str, ...]:
        store = await open_store()
        try:
            keys = await session_keystore.read(store)
            return keys.key_ids if keys else ()
        finally:
            await store.close()

    return asyncio.run(read())


def test_rotate_adds_a_signing_key(tmp_path: pathlib.Path) -> None:
    """Each rotation adds a key that signs, after the first key the server would have made."""
    state = tmp_path / "state"
    state.mkdir()
    # The database of a server that ran there before.
    asyncio.run(close_new(state))
    first = run_drover("session-keys", "rotate", "--state-dir", str(state))
    second = run_drover("session-keys", "rotate", "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    ids = stored_key_ids(lambda: SqliteStore.open(state / "drover.sqlite3"))
    assert len(ids) == 3
    assert first.stdout.startswith(f"session key {ids[1]} added")
    assert second.stdout.startswith(f"session key {ids[2]} added")


def test_rotate_needs_the_servers_state_dir(tmp_path: pathlib.Path) -> None:
    """Rotating where no server keeps its state fails, naming the place, and creates nothing."""
    run = run_drover("session-keys", "rotate", "--state-dir", str(tmp_path))
    assert run.returncode == 1
    assert f"{tmp_path / 'drover.sqlite3'} does not exist" in run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.datastore
def test_rotate_on_datastore(datastore_emulator: Emulator, tmp_path: pathlib.Path) -> None:
    """With the store flags of `serve`, a rotation goes to the Datastore replicas share."""
    namespace = new_namespace()
    flags = ["--store", "datastore", "--datastore-project", datastore_emulator.project]
    run = run_drover(
        "session-keys",
        "rotate",
        *flags,
        "--datastore-namespace",
        namespace,
        env={"DATASTORE_EMULATOR_HOST": datastore_emulator.host},
    )
    assert run.returncode == 0, run.stderr

    ids = stored_key_ids(lambda: datastore_emulator.open_store(namespace))
    assert len(ids) == 2
    assert run.stdout.startswith(f"session key {ids[1]} added")
