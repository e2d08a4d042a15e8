"""Choosing and opening the Store backend (server/store/backends.py)."""

from __future__ import annotations

import pathlib

import pytest

from server.clock import FakeClock
from server.model import Bot
from server.store import backends
from server.store.backends import StoreOptions, open_store
from server.store.datastore import DatastoreStore
from server.store.sqlite import SqliteStore
from tests.store.datastore_emulator import Emulator, new_namespace


def test_options_refuse_what_does_not_fit() -> None:
    """An unknown backend, or Datastore settings for SQLite, are refused naming the problem."""
    with pytest.raises(ValueError, match="unknown store 'mysql'"):
        StoreOptions(backend="mysql")
    for field in ("project", "namespace", "database"):
        with pytest.raises(ValueError, match="needs the datastore store"):
            StoreOptions(**{field: "x"})


def test_only_datastore_is_shared() -> None:
    """Datastore is the backend replicas share; SQLite belongs to one process."""
    assert StoreOptions(backend="datastore").is_shared
    assert not StoreOptions().is_shared


async def test_sqlite_lives_in_the_state_dir(tmp_path: pathlib.Path) -> None:
    """The SQLite store is the state directory's drover.sqlite3."""
    store = await open_store(StoreOptions(), tmp_path, FakeClock())
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / backends.SQLITE_FILE).exists()
    finally:
        await store.close()


@pytest.mark.datastore
async def test_datastore_opens_on_the_emulator(
    datastore_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """With DATASTORE_EMULATOR_HOST set, the project, database and namespace asked for are used."""
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", datastore_emulator.host)
    namespace = new_namespace()
    options = StoreOptions(
        backend="datastore",
        project=datastore_emulator.project,
        namespace=namespace,
        database="drover",
    )
    assert f"emulator {datastore_emulator.host}" in options.describe()
    assert f"namespace {namespace}" in options.describe()
    store = await open_store(options, tmp_path, FakeClock())
    try:
        assert isinstance(store, DatastoreStore)
        assert (store.client.project, store.client.namespace, store.client.database) == (
            datastore_emulator.project,
            namespace,
            "drover",
        )
        await store.put_bot(Bot(bot_id="b1"))
        assert await store.get_bot("b1") == Bot(bot_id="b1")
    finally:
        await store.close()
    assert not (tmp_path / backends.SQLITE_FILE).exists(), "no SQLite file is made"


@pytest.mark.datastore
async def test_project_comes_from_the_emulator_environment(
    datastore_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """Without a project, $DATASTORE_PROJECT_ID (what the gcloud emulator scripts set) names it."""
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", datastore_emulator.host)
    monkeypatch.setenv(backends.PROJECT_ENV, "from-env")
    options = StoreOptions(backend="datastore", namespace=new_namespace())
    assert "project from-env" in options.describe()
    store = await open_store(options, tmp_path, FakeClock())
    try:
        assert isinstance(store, DatastoreStore)
        assert store.client.project == "from-env"
    finally:
        await store.close()
