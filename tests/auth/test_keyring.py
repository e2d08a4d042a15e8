"""Key rotation of minted tokens, driven by the injected clock (server/auth/keyring.py)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import pytest

from server.auth.keyring import MISS_RELOAD_SECS, KeyPolicy, Keyring
from server.clock import FakeClock
from server.store.sqlite import SqliteStore

HOUR = 3600.0
POLICY = KeyPolicy(
    purpose="test",
    algorithm="HS256",
    rotation_secs=24 * HOUR,
    max_token_secs=HOUR,
    publish_ahead_secs=6 * HOUR,
)


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in tmp_path."""
    opened = await SqliteStore.open(tmp_path / "drover.sqlite3")
    yield opened
    await opened.close()


async def test_first_use_creates_a_key_that_signs_at_once(
    store: SqliteStore, clock: FakeClock
) -> None:
    """With no key stored, the first signer creates one active now, retiring after a turn."""
    ring = Keyring(store, POLICY, clock)
    key = await ring.signing_key()
    assert key.active_ts == clock.now()
    assert key.retire_ts == clock.now() + 24 * HOUR
    assert key.expires_ts == key.retire_ts + HOUR
    assert len(key.material) == 32
    assert await ring.signing_key() == key
    assert await store.list_signing_keys("test") == [key]


async def test_next_key_is_published_ahead_then_takes_over(
    store: SqliteStore, clock: FakeClock
) -> None:
    """The next key appears publish_ahead before its turn, signs from then, and the old one
    verifies until its last token expired."""
    ring = Keyring(store, POLICY, clock)
    first = await ring.signing_key()
    clock.advance(17 * HOUR)
    assert await ring.signing_key() == first
    assert [k.key_id for k in await ring.published()] == [first.key_id]
    clock.advance(1 * HOUR + 1)
    assert await ring.signing_key() == first
    published = await ring.published()
    assert len(published) == 2
    second = published[1]
    assert second.active_ts == first.retire_ts
    clock.set(first.retire_ts)
    assert await ring.signing_key() == second
    assert await ring.verification_key(first.key_id) == first
    clock.set(first.expires_ts + 1)
    assert await ring.verification_key(first.key_id) is None
    assert [k.key_id for k in await ring.published()] == [second.key_id]


async def test_a_server_down_through_a_turn_starts_a_key_at_once(
    store: SqliteStore, clock: FakeClock
) -> None:
    """When no stored key's turn covers now, a new key signs from now, not from a past turn."""
    ring = Keyring(store, POLICY, clock)
    first = await ring.signing_key()
    clock.advance(100 * HOUR)
    key = await ring.signing_key()
    assert key != first
    assert key.active_ts == clock.now()
    # The long-expired first key was dropped when the new one was added.
    assert await store.list_signing_keys("test") == [key]


async def test_two_replicas_rotating_at_once_agree_on_one_key(
    store: SqliteStore, clock: FakeClock
) -> None:
    """Two keyrings (two replicas) over one Store end up signing with the same key."""
    a, b = Keyring(store, POLICY, clock), Keyring(store, POLICY, clock)
    first = await a.signing_key()
    assert await b.signing_key() == first
    clock.advance(24 * HOUR)
    key_a, key_b = await asyncio.gather(a.signing_key(), b.signing_key())
    assert key_a == key_b
    assert [k.active_ts for k in await store.list_signing_keys("test")] == [
        first.active_ts,
        clock.now(),
    ]


async def test_a_key_made_by_another_replica_verifies(store: SqliteStore, clock: FakeClock) -> None:
    """A token naming a key this replica has not loaded makes it read the Store again."""
    a, b = Keyring(store, POLICY, clock), Keyring(store, POLICY, clock)
    assert await b.verification_key("nope") is None
    key = await a.signing_key()
    clock.advance(MISS_RELOAD_SECS)
    assert await b.verification_key(key.key_id) == key


async def test_rsa_keys_for_rs256(store: SqliteStore, clock: FakeClock) -> None:
    """An RS256 policy makes PEM private keys."""
    ring = Keyring(
        store,
        KeyPolicy("rsa", "RS256", rotation_secs=HOUR, max_token_secs=60, publish_ahead_secs=0),
        clock,
    )
    key = await ring.signing_key()
    assert key.algorithm == "RS256"
    assert key.material.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_policy_checks_its_numbers() -> None:
    """A policy with an unknown algorithm or a lead time past the turn is refused."""
    with pytest.raises(ValueError, match="algorithm"):
        KeyPolicy("x", "none", rotation_secs=10, max_token_secs=1, publish_ahead_secs=0)
    with pytest.raises(ValueError, match="publish_ahead"):
        KeyPolicy("x", "HS256", rotation_secs=10, max_token_secs=1, publish_ahead_secs=10)
