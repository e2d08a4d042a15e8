"""API tokens: their form, what the Store keeps of them, and their verifier."""

from __future__ import annotations

import pathlib
import re
from collections.abc import AsyncIterator

import pytest

from server.auth.authenticator import ExpiredToken, InvalidToken, RevokedToken
from server.auth.tokens import ApiTokenService, ApiTokenVerifier, TokenNotFound, digest
from server.clock import FakeClock
from server.errors import InvalidRequest
from server.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in tmp_path, closed at teardown."""
    opened = await SqliteStore.open(tmp_path / "drover.sqlite3")
    yield opened
    await opened.close()


async def test_a_token_is_stored_only_as_its_digest(store: SqliteStore) -> None:
    """The token reads drv_<16 hex>_<43 base64url>; the Store holds its SHA-256, not it."""
    clock = FakeClock()
    token, record = await ApiTokenService(store, clock).create("alice", "viewer", created_by="x")
    assert re.fullmatch(r"drv_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)
    assert token.split("_")[1] == record.token_id
    assert record.sha256 == digest(token)
    rows = store.connection.execute("SELECT data FROM api_tokens").fetchall()
    assert token not in str(rows)
    assert token.split("_", 2)[2] not in str(rows)
    principal = await ApiTokenVerifier(store, clock).verify(token)
    assert principal is not None
    assert (principal.identity, principal.top_role) == ("user:alice", "viewer")


async def test_the_verifier_refuses_what_it_did_not_issue(store: SqliteStore) -> None:
    """Other kinds are not its business; a wrong secret, expiry and revocation are refused."""
    clock = FakeClock()
    tokens = ApiTokenService(store, clock)
    verifier = ApiTokenVerifier(store, clock)
    token, record = await tokens.create("bob", "admin", created_by="x", expires_in_secs=10)
    assert await verifier.verify("Zm9v") is None
    with pytest.raises(InvalidToken, match="never issued"):
        await verifier.verify(token[:-1] + ("A" if token[-1] != "A" else "B"))
    clock.advance(10)
    with pytest.raises(ExpiredToken, match=record.token_id):
        await verifier.verify(token)
    other, _ = await tokens.create("carol", "viewer", created_by="x")
    revoked = await tokens.revoke(other)  # the whole token works as well as its ID
    assert revoked.revoked_ts == clock.now()
    with pytest.raises(RevokedToken):
        await verifier.verify(other)
    with pytest.raises(TokenNotFound):
        await tokens.revoke("0000000000000000")


@pytest.mark.parametrize(
    ("name", "role", "expires", "field"),
    [
        ("", "viewer", 0, "name ''"),
        ("a:b", "viewer", 0, "name 'a:b'"),
        ("alice", "owner", 0, "role 'owner'"),
        ("alice", "viewer", -1, "expires_in_secs"),
    ],
)
async def test_bad_token_requests_store_nothing(
    store: SqliteStore, name: str, role: str, expires: int, field: str
) -> None:
    """A bad name, role or lifetime is refused naming it, and no token is stored."""
    with pytest.raises(InvalidRequest, match=re.escape(field)):
        await ApiTokenService(store, FakeClock()).create(
            name, role, created_by="x", expires_in_secs=expires
        )
    assert await store.list_api_tokens() == []
