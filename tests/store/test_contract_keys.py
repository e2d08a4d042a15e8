"""The Store contract for signing keys (list_signing_keys, add_signing_key), on every backend."""

from __future__ import annotations

import asyncio

from server.model import SigningKey
from server.store.base import Store
from tests.store.records import NOW


def signing_key(
    key_id: str, active: float, *, purpose: str = "id_token", expires: float | None = None
) -> SigningKey:
    """A key of `purpose` that signs for 100 s from `active` and verifies 50 s longer."""
    return SigningKey(
        purpose=purpose,
        key_id=key_id,
        algorithm="RS256",
        material=b"-----BEGIN PRIVATE KEY-----\n\x00\xff secret bytes",
        created_ts=active - 10,
        active_ts=active,
        retire_ts=active + 100,
        expires_ts=expires if expires is not None else active + 150,
    )


async def test_no_keys_at_first(store: Store) -> None:
    """A purpose without keys lists none."""
    assert await store.list_signing_keys("id_token") == []


async def test_first_key_is_stored_whole(store: Store) -> None:
    """The first key of a purpose is stored, returned, and read back byte for byte."""
    first = signing_key("k1", NOW)
    assert await store.add_signing_key(first, after="") == first
    assert await store.list_signing_keys("id_token") == [first]
    assert await store.list_signing_keys("access_token") == []


async def test_keys_list_in_activation_order(store: Store) -> None:
    """Keys list oldest activation first, whatever their IDs."""
    first = signing_key("zz", NOW)
    second = signing_key("aa", NOW + 100)
    await store.add_signing_key(first, after="")
    assert await store.add_signing_key(second, after="zz") == second
    assert await store.list_signing_keys("id_token") == [first, second]


async def test_add_refused_when_newest_is_not_after(store: Store) -> None:
    """A key added against a stale newest key is not stored; the real newest comes back."""
    first = signing_key("k1", NOW)
    second = signing_key("k2", NOW + 100)
    await store.add_signing_key(first, after="")
    await store.add_signing_key(second, after="k1")
    late = signing_key("k3", NOW + 100)
    assert await store.add_signing_key(late, after="k1") == second
    assert await store.add_signing_key(signing_key("k4", NOW), after="") == second
    assert [k.key_id for k in await store.list_signing_keys("id_token")] == ["k1", "k2"]


async def test_concurrent_rotations_store_one_key(store: Store) -> None:
    """Two writers rotating after the same key at once leave exactly one new key."""
    await store.add_signing_key(signing_key("k1", NOW), after="")
    a, b = await asyncio.gather(
        store.add_signing_key(signing_key("a", NOW + 100), after="k1"),
        store.add_signing_key(signing_key("b", NOW + 100), after="k1"),
    )
    assert a == b
    keys = await store.list_signing_keys("id_token")
    assert [k.key_id for k in keys] == ["k1", a.key_id]


async def test_existing_key_id_is_never_replaced(store: Store) -> None:
    """Adding a key whose ID is stored changes nothing."""
    first = signing_key("k1", NOW)
    await store.add_signing_key(first, after="")
    other = signing_key("k1", NOW + 500)
    assert await store.add_signing_key(other, after="k1") == first
    assert await store.list_signing_keys("id_token") == [first]


async def test_expired_keys_are_dropped_when_a_key_is_added(store: Store) -> None:
    """Keys that verify nothing by the new key's creation are deleted with the add."""
    old = signing_key("old", NOW, expires=NOW + 150)
    mid = signing_key("mid", NOW + 100, expires=NOW + 10_000)
    await store.add_signing_key(old, after="")
    await store.add_signing_key(mid, after="old")
    new = signing_key("new", NOW + 1000)
    await store.add_signing_key(new, after="mid")
    assert [k.key_id for k in await store.list_signing_keys("id_token")] == ["mid", "new"]


async def test_purposes_are_independent(store: Store) -> None:
    """The newest key is per purpose: rotating one purpose does not affect another."""
    await store.add_signing_key(signing_key("i1", NOW), after="")
    access = signing_key("a1", NOW, purpose="access_token")
    assert await store.add_signing_key(access, after="") == access
    assert [k.key_id for k in await store.list_signing_keys("access_token")] == ["a1"]
    assert [k.key_id for k in await store.list_signing_keys("id_token")] == ["i1"]
