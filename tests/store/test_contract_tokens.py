"""Store contract: API tokens (add, get, list, revoke), for every backend."""

from __future__ import annotations

import asyncio

import pytest

from server.errors import Conflict
from server.model import ApiToken
from server.store.base import Store


def _token(token_id: str, created_ts: float, **fields: object) -> ApiToken:
    values: dict[str, object] = {"name": f"user-{token_id}", "role": "scheduler", **fields}
    return ApiToken(
        token_id=token_id,
        sha256="ab" * 32,
        created_ts=created_ts,
        **values,  # type: ignore[arg-type]
    )


async def test_tokens_round_trip_and_list_oldest_first(store: Store) -> None:
    """A stored token reads back whole; the listing is by creation time, then ID."""
    later = _token("c0ffee000001", 20.0, created_by="user:root", expires_ts=99.5)
    await store.add_api_token(later)
    await store.add_api_token(_token("b0ffee000002", 10.0))
    await store.add_api_token(_token("a0ffee000003", 20.0))
    assert await store.get_api_token("c0ffee000001") == later
    assert await store.get_api_token("missing") is None
    listed = await store.list_api_tokens()
    assert [t.token_id for t in listed] == ["b0ffee000002", "a0ffee000003", "c0ffee000001"]


async def test_a_token_id_is_never_reused(store: Store) -> None:
    """Adding a token whose ID exists is a Conflict and leaves the first one alone."""
    first = _token("dup000000001", 1.0)
    await store.add_api_token(first)
    with pytest.raises(Conflict):
        await store.add_api_token(_token("dup000000001", 2.0, role="admin"))
    assert await store.get_api_token("dup000000001") == first


async def test_revoking_keeps_the_first_time(store: Store) -> None:
    """Revoking sets revoked_ts once; again changes nothing; an unknown ID gives None."""
    await store.add_api_token(_token("rev000000001", 1.0))
    revoked = await store.revoke_api_token("rev000000001", 5.0)
    assert revoked is not None
    assert revoked.revoked_ts == 5.0
    again = await store.revoke_api_token("rev000000001", 9.0)
    assert again is not None
    assert again.revoked_ts == 5.0
    stored = await store.get_api_token("rev000000001")
    assert stored is not None
    assert stored.revoked_ts == 5.0
    assert await store.revoke_api_token("nope", 5.0) is None


async def test_concurrent_revocations_agree(store: Store) -> None:
    """Two revocations racing both see one revocation time."""
    await store.add_api_token(_token("race00000001", 1.0))
    first, second = await asyncio.gather(
        store.revoke_api_token("race00000001", 3.0), store.revoke_api_token("race00000001", 4.0)
    )
    assert first is not None
    assert second is not None
    assert first.revoked_ts == second.revoked_ts
