"""`drover session-keys rotate`: a new signing key for bot sessions, in the Store."""

from __future__ import annotations

import asyncio
import pathlib

from server.auth import session_keystore
from server.store.sqlite import SqliteStore
from tests.cli.conftest import run_drover


def stored_key_ids(state_dir: pathlib.Path) -> tuple[str, ...]:
    """The session key IDs in a state directory's SQLite store, oldest first."""

    async def read() -> tuple[str, ...]:
        store = await SqliteStore.open(state_dir / "drover.sqlite3")
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
    first = run_drover("session-keys", "rotate", "--state-dir", str(state))
    second = run_drover("session-keys", "rotate", "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    ids = stored_key_ids(state)
    assert len(ids) == 3
    assert first.stdout.startswith(f"session key {ids[1]} added")
    assert second.stdout.startswith(f"session key {ids[2]} added")


def test_rotate_needs_an_existing_state_dir(tmp_path: pathlib.Path) -> None:
    """Rotating in a state directory that does not exist fails, naming it, and creates nothing."""
    missing = tmp_path / "nope"
    run = run_drover("session-keys", "rotate", "--state-dir", str(missing))
    assert run.returncode == 1
    assert f"no state directory {missing}" in run.stderr
    assert not missing.exists()
