"""Session keys in the Store (server/auth/session_keystore.py), on every backend.

Several stores on one database stand for several server replicas (the
fixtures of tests/store/backends.py): what matters is that they all end up
with the same keys, however they start, and that a rotation reaches them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from server.auth import session, session_keystore
from server.auth.session import SessionKey, SessionKeys
from server.clock import FakeClock
from server.store.base import Store
from tests.auth.test_session import fixed_keys, make_session
from tests.store.backends import ReplicaOpener


def write_keys_file(state_dir: Path, keys: SessionKeys) -> None:
    """Leaves the keys file of an older server in `state_dir`."""
    entries = [
        {"id": k.key_id, "secret": base64.b64encode(k.secret).decode("ascii")} for k in keys.keys
    ]
    path = state_dir / session.KEYS_FILE
    path.write_text(json.dumps({"keys": entries}))
    path.chmod(0o600)


async def test_first_start_stores_one_key(store: Store, store_clock: FakeClock) -> None:
    """A store without keys gets one new key, which every later start reads back."""
    assert await session_keystore.read(store) is None
    first = await session_keystore.load_or_create(store, store_clock)
    assert len(first.keys) == 1
    again = await session_keystore.load_or_create(store, store_clock)
    assert again.keys == first.keys


async def test_replicas_starting_together_agree(
    store: Store, open_replica: ReplicaOpener, store_clock: FakeClock
) -> None:
    """Replicas creating the first key at the same moment all end up with the one stored."""
    replicas = [store, *[await open_replica() for _ in range(3)]]
    loaded = await asyncio.gather(
        *(session_keystore.load_or_create(r, store_clock) for r in replicas)
    )
    assert len({keys.keys for keys in loaded}) == 1
    assert len(loaded[0].keys) == 1
    stored = await session_keystore.read(store)
    assert stored is not None
    assert stored.keys == loaded[0].keys


async def test_keys_file_of_an_older_server_is_imported(
    store: Store, store_clock: FakeClock, tmp_path: Path
) -> None:
    """An older server's keys file is stored in order, its newest key signing."""
    write_keys_file(tmp_path, fixed_keys("old", "new"))
    token = session.marshal(make_session(store_clock), fixed_keys("old"))
    keys = await session_keystore.load_or_create(store, store_clock, tmp_path)
    assert keys.key_ids == ("old", "new")
    assert keys.signing.key_id == "new"
    assert session.unmarshal(token, keys).bot_id == "bot1"


async def test_stored_keys_win_over_a_keys_file(
    store: Store, store_clock: FakeClock, tmp_path: Path
) -> None:
    """Once keys are stored, a keys file in a replica's state directory is not read."""
    stored = await session_keystore.load_or_create(store, store_clock)
    write_keys_file(tmp_path, fixed_keys("other"))
    keys = await session_keystore.load_or_create(store, store_clock, tmp_path)
    assert keys.keys == stored.keys


async def test_rotation_reaches_another_replica(
    store: Store, open_replica: ReplicaOpener, store_clock: FakeClock
) -> None:
    """A rotation through one store makes another's keys, once reloaded, verify and sign with it."""
    other = await open_replica()
    here = await session_keystore.load_or_create(store, store_clock)
    there = await session_keystore.load_or_create(other, store_clock)
    old_token = session.marshal(make_session(store_clock), there)
    key = await session_keystore.rotate(store, store_clock)
    assert there.signing.key_id != key.key_id
    assert await session_keystore.reload(other, there)
    assert there.signing.key_id == key.key_id
    assert session.unmarshal(old_token, there).bot_id == "bot1"
    new_token = session.marshal(make_session(store_clock), there)
    assert await session_keystore.reload(store, here)
    assert session.unmarshal(new_token, here).bot_id == "bot1"
    assert not await session_keystore.reload(store, here)


async def test_concurrent_rotations_both_take_effect(
    store: Store, open_replica: ReplicaOpener, store_clock: FakeClock
) -> None:
    """Two rotations racing through two stores add two keys, one after the other."""
    other = await open_replica()
    first = await session_keystore.load_or_create(store, store_clock)
    added = await asyncio.gather(
        session_keystore.rotate(store, store_clock), session_keystore.rotate(other, store_clock)
    )
    stored = await session_keystore.read(store)
    assert stored is not None
    assert stored.key_ids[0] == first.signing.key_id
    assert sorted(stored.key_ids[1:]) == sorted(k.key_id for k in added)


async def test_rotation_with_a_clock_behind_still_signs(
    store: Store, store_clock: FakeClock
) -> None:
    """A rotation from a machine whose clock is behind still adds the newest key."""
    await session_keystore.load_or_create(store, store_clock)
    store_clock.advance(-3600)
    key: SessionKey = await session_keystore.rotate(store, store_clock)
    stored = await session_keystore.read(store)
    assert stored is not None
    assert stored.signing.key_id == key.key_id


@pytest.mark.parametrize("content", ["not json", json.dumps({"keys": []})])
async def test_unusable_keys_file_stops_the_start(
    store: Store, store_clock: FakeClock, tmp_path: Path, content: str
) -> None:
    """A keys file that cannot be read refuses the start and stores nothing."""
    (tmp_path / session.KEYS_FILE).write_text(content)
    with pytest.raises(session.BadKeysFile):
        await session_keystore.load_or_create(store, store_clock, tmp_path)
    assert await session_keystore.read(store) is None
